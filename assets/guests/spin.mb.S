/*
 * spin: a multiboot guest that never ends on its own: it writes an ever-increasing POST code to port
 * 0x80 in a loop. For --timeout, --max-exits and Ctrl-C.
 */
    .code32
    .section .multiboot, "a"
    .align 4
    .long 0x1badb002, 0, -0x1badb002

    .text
    .globl _start
_start:
    xor %eax, %eax
1:  out %al, $0x80
    inc %eax
    jmp 1b
