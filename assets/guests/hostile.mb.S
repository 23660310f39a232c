/*
 * hostile: a multiboot guest that does what a VMM must survive: string port I/O of a whole page, port
 * accesses of every width to unclaimed ports and to the debug-exit port's neighbours, MMIO at the top
 * of the 4 GiB hole, and finally a jump into the MMIO hole, where there is no code to fetch.
 * kvmscope must end the run with a report (status 3), never panic.
 */
    .code32
    .section .multiboot, "a"
    .align 4
    .long 0x1badb002, 0, -0x1badb002

    .text
    .globl _start
_start:
    mov $stack_top, %esp
    /* rep outsb: 4096 bytes to an unclaimed port, then to the serial port. */
    mov $0x100000, %esi
    mov $4096, %ecx
    mov $0x512, %dx
    cld
    rep outsb
    /* rep insw: 2048 words from an unclaimed port into the buffer. */
    mov $buffer, %edi
    mov $2048, %ecx
    rep insw
    /* Every width on an unclaimed port, and reads of the serial port's registers. */
    mov $0x513, %dx
    in %dx, %al
    in %dx, %ax
    in %dx, %eax
    out %eax, %dx
    mov $0x3fa, %dx
    in %dx, %eax
    /* MMIO at the very top of the 32-bit space. */
    movl $1, 0xfffffffc
    mov 0xfffffffc, %eax
    /* Execute from the MMIO hole. */
    mov $0xd0000000, %eax
    jmp *%eax

    .bss
    .align 16
buffer: .skip 4096
    .skip 4096
stack_top:
