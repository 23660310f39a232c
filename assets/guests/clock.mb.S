/*
 * clock: a multiboot guest whose input changes with time: it reads the CMOS clock's seconds
 * (index 0 on ports 0x70/0x71) four times, each followed by a POST code write, then exits through
 * isa-debug-exit with 0x01 (status 3). For going back in time: run forward again a second later,
 * each read must get the value it got the first time, or the guest would take another path.
 */
    .code32
    .section .multiboot, "a"
    .align 4
    .long 0x1badb002
    .long 0
    .long -0x1badb002

    .text
    .globl _start
_start:
    mov $4, %ecx
1:  xor %al, %al
    out %al, $0x70
    in $0x71, %al                   /* the seconds, BCD: what was read stays in AL */
    out %al, $0x80
    dec %ecx
    jnz 1b
    mov $0x01, %al
    out %al, $0xf4
    hlt
