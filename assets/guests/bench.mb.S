/*
 * bench: measures exits from inside the guest. It reads the TSC, makes 100000 port exits (`out` to the
 * POST port 0x80) and 100000 MMIO exits (writes to the unclaimed page at 0xd0000000), reads the TSC
 * again and prints "tsc-cycles <hex>\n" on the serial port, then exits through isa-debug-exit with
 * 0. Boot time and host noise stay outside the measured window.
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
    /* One warm-up exit, so the VMM's first-time work (decoder tables, caches) is not measured. */
    out %al, $0x80
    rdtsc
    mov %eax, %esi
    mov %edx, %edi
    mov $EXITS, %ecx
1:  out %al, $0x80
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
    .asciz "tsc-cycles "
hexdigits:
    .ascii "0123456789abcdef"

    .bss
    .align 16
    .skip 4096
stack_top:
