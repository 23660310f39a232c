/*
 * hello: the multiboot test guest. It checks the boot loader's handshake, prints a greeting and its
 * command line on the serial port, touches the POST port, an unclaimed port and an unclaimed MMIO
 * address, and exits through isa-debug-exit with 0x10 (kvmscope and QEMU exit with status 33).
 *
 * Exits it makes, exactly: per printed byte one `in` from 0x3fd and one `out` to 0x3f8; three `out`s to
 * 0x80; one `in` from 0x510; one MMIO write to 0xd0000000 and one MMIO read from 0xd0000004; one `out`
 * to 0xf4.
 */
    .code32
    .section .multiboot, "a"
    .align 4
    .long 0x1badb002                 /* magic */
    .long 0x00000003                 /* flags: page-align modules, memory info */
    .long -(0x1badb002 + 0x00000003) /* checksum */

    .text
    .globl _start
_start:
    mov $stack_top, %esp
    cmp $0x2badb002, %eax
    jne bad_magic
    mov %ebx, %edi                  /* multiboot information */

    mov $greeting, %esi
    call puts

    /* Command line (flag bit 2), then a newline. */
    testl $4, (%edi)
    jz 1f
    mov 16(%edi), %esi
    call puts
1:  mov $'\n', %al
    call putc

    /* POST codes. */
    mov $0x11, %al
    out %al, $0x80
    mov $0x22, %al
    out %al, $0x80
    mov $0x33, %al
    out %al, $0x80

    /* An unclaimed port reads as all ones. */
    mov $0x510, %dx
    in %dx, %al
    cmp $0xff, %al
    jne bad_read

    /* An unclaimed MMIO page: the write is dropped, the read gives all ones. */
    movl $0xcafef00d, 0xd0000000
    mov 0xd0000004, %eax
    cmp $0xffffffff, %eax
    jne bad_read

    mov $0x10, %eax
    jmp exit

bad_magic:
    mov $0x7e, %eax
    jmp exit
bad_read:
    mov $0x7d, %eax
    jmp exit

#include "serial32.inc"

    .section .rodata
greeting:
    .asciz "Hello from kvmscope's multiboot guest! cmdline: "

    .bss
    .align 16
    .skip 4096
stack_top:
