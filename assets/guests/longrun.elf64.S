/*
 * longrun: a 64-bit guest for going back a long way. 300,000 rounds, each adding one to `counter`
 * in memory and writing it to the POST port 0x80 (one exit a round); in round 50,000 it also
 * stores the round in `marker`. After the last round it reaches `done` and exits through
 * isa-debug-exit with 0x07 (status 15). Symbols: round, done, counter, marker (on a page of their
 * own, 0x201000).
 */
    .code64
    .text
    .globl _start, round, done, counter, marker
_start:
    lea stack_top(%rip), %rsp
round:
    incq counter(%rip)
    mov counter(%rip), %rax
    out %al, $0x80
    cmp $50000, %rax
    jne 1f
    mov %rax, marker(%rip)
1:  cmp $300000, %rax
    jne round
done:
    mov $0x07, %al
    out %al, $0xf4
    hlt

    .data
    .align 4096
    .type counter, @object
counter:
    .quad 0
    .size counter, 8
    .type marker, @object
marker:
    .quad 0
    .size marker, 8

    .bss
    .align 16
    .skip 4096
stack_top:
