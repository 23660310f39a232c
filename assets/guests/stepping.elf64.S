/*
 * stepping: a 64-bit guest that makes every kind of exit that reaches kvmscope, each instruction
 * that exits followed by an `inc %r15` that marks it: a single step over an exiting instruction
 * must end right after it, before the `inc`, forward and backward. Three rounds of:
 *
 *   out of 1, 2 and 4 bytes (the POST port 0x80); in of 1 byte from the CMOS clock's seconds
 *   (its value changes with time: going forward again must give the first value back); in of 1,
 *   2 and 4 bytes from port 0x2f0, where nothing answers; `rep outsb` of 4 bytes; MMIO writes of
 *   1, 2, 4 and 8 bytes and reads of 1, 2, 4 and 8 bytes at 0xe0001000, where nothing answers,
 *   plain and with an address-size prefix; `rdmsr` and `wrmsr` of PAT (exits with
 *   `--trap-msr PAT`); `cpuid` (KVM answers it); a call that writes memory (`counter`, and its
 *   own stack).
 *
 * Then it exits through isa-debug-exit with 0x05 (status 11) and halts.
 */
    .code64
    .text
    .globl _start, round, bump, counter
_start:
    lea stack_top(%rip), %rsp
    mov $3, %r14
round:
    mov $0x80, %dx
    mov $0x11, %al
    out %al, $0x80
    inc %r15
    mov $0x2211, %ax
    out %ax, %dx
    inc %r15
    mov $0x44332211, %eax
    out %eax, %dx
    inc %r15

    xor %al, %al
    out %al, $0x70
    inc %r15
    in $0x71, %al                   /* the seconds: what was read stays in AL */
    inc %r15
    mov %al, %bl

    mov $0x2f0, %dx
    in %dx, %al
    inc %r15
    in %dx, %ax
    inc %r15
    in %dx, %eax
    inc %r15

    lea text(%rip), %rsi
    mov $4, %ecx
    mov $0x80, %dx
    rep outsb
    inc %r15

    mov $0xe0001000, %rdi
    movb $0x5a, (%rdi)
    inc %r15
    movw $0x5a5a, 2(%rdi)
    inc %r15
    movl $0x5a5a5a5a, 4(%rdi)
    inc %r15
    movq %r15, 8(%rdi)
    inc %r15
    addr32 movl $0x01020304, 16(%edi)
    inc %r15
    movb (%rdi), %al
    inc %r15
    movw 2(%rdi), %ax
    inc %r15
    movl 4(%rdi), %eax
    inc %r15
    movq 8(%rdi), %rax
    inc %r15
    addr32 movl 16(%edi), %eax
    inc %r15

    mov $0x277, %ecx                /* PAT */
    rdmsr
    inc %r15
    wrmsr
    inc %r15

    xor %eax, %eax
    cpuid
    inc %r15

    call bump
    inc %r15

    dec %r14
    jnz round

    mov $0x05, %al
    out %al, $0xf4
    hlt

    .type bump, @function
bump:
    push %rbx
    incl counter(%rip)
    mov counter(%rip), %ebx
    add %ebx, %r13d
    pop %rbx
    ret
    .size bump, . - bump

    .data
text:
    .ascii "step"
    .align 4096
    .type counter, @object
counter:
    .long 0
    .size counter, 4

    .bss
    .align 16
    .skip 4096
stack_top:
