/*
 * tsc: a 64-bit guest whose data no exit carries in: eight rounds, each reading the time stamp
 * counter (`rdtsc`, which the host cannot give back going forward again) and writing its low
 * byte to the POST port 0x80 from RBX. Then it exits through isa-debug-exit with 0x09 (status 19).
 * Going back over it, kvmscope must say that the guest's data differ, never show values that
 * going forward never had.
 */
    .code64
    .text
    .globl _start, round
_start:
    mov $8, %r12
round:
    rdtsc
    mov %rax, %rbx
    mov %bl, %al
    out %al, $0x80
    dec %r12
    jnz round
    mov $0x09, %al
    out %al, $0xf4
    hlt
