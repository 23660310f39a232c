/*
 * gdbtest: a 64-bit ELF guest for the gdb stub tests. `_start` calls `bump` five times; `bump` adds
 * one to `counter` and prints a dot; then the guest exits through isa-debug-exit with the counter
 * (status 11). Symbols: _start, bump, done, counter (on a page of its own, 0x201000).
 */
    .code64
    .text
    .globl _start, bump, done, counter
_start:
    lea stack_top(%rip), %rsp
1:  call bump
    cmpl $5, counter(%rip)
    jne 1b
done:
    mov counter(%rip), %eax
    out %eax, $0xf4
    hlt

    .type bump, @function
bump:
    incl counter(%rip)
    mov $0x3f8, %dx
    mov $'.', %al
    out %al, %dx
    ret
    .size bump, . - bump

    .data
    /* A page of its own: where the host cannot fire DR7 watchpoints, a read watchpoint unmaps it. */
    .align 4096
    .type counter, @object
counter:
    .long 0
    .size counter, 4

    .bss
    .align 16
    .skip 4096
stack_top:
