/*
 * bench: measures exits from inside the guest. It reads the TSC, makes 100000 port exits (`out` to the
 * POST port 0x80) and 100000 MMIO exits (writes to the unclaimed page at 0xd0000000), reads the TSC
 * again and prints "tsc-cycles <hex>\n" on the serial port, then exits through isa-debug-exit with
 * 0. Boot time and host noise stay outside the measured window. With `console` on its command line
 * the port exits are bytes to the serial port (a guest printing), "x" each.
 */
    .code32
    .section .multiboot, "a"
    .align 4
    .long 0x1badb002, 0, -0x1badb002

    .set EXITS, 100000

    .text
    .globl _start
_start:
    mov $stack_top, %esp
    /* The port: POST, or COM1 with `console` on the command line (multiboot info flag 2). */
    mov $0x80, %edx
    testl $4, (%ebx)
    jz 0f
    mov 16(%ebx), %esi
    cmpb $'c', (%esi)
    jne 0f
    mov $0x3f8, %edx
0:  mov $'x', %al
    /* One warm-up exit, so the VMM's first-time work (decoder tables, caches) is not measured. */
    out %al, %dx
    push %edx
    rdtsc
    mov %eax, %esi
    mov %edx, %edi
    pop %edx
    mov $'x', %al
    mov $EXITS, %ecx
1:  out %al, %dx
    dec %ecx
    jnz 1b
    mov $EXITS, %ecx
3:  movl %ecx, 0xd0000000
    dec %ecx
    jnz 3b
    rdtsc
    sub %esi, %eax
    sbb %edi, %edx
    mov %eax, %ebx                  /* low half */
    mov %edx, %ebp                  /* high half */

    mov $label, %esi
    call puts
    mov %ebp, %eax
    call puthex32
    mov %ebx, %eax
    call puthex32
    mov $'\n', %al
    call putc
    xor %eax, %eax
    jmp exit

/* puthex32: print %eax as 8 hex digits. */
puthex32:
    push %ecx
    push %edx
    mov %eax, %edx
    mov $8, %ecx
2:  rol $4, %edx
    mov %edx, %eax
    and $0xf, %eax
    movb hexdigits(%eax), %al
    call putc
    dec %ecx
    jnz 2b
    pop %edx
    pop %ecx
    ret

#include "serial32.inc"

    .section .rodata
label:
    .asciz "\ntsc-cycles "
hexdigits:
    .ascii "0123456789abcdef"

    .bss
    .align 16
    .skip 4096
stack_top:
