/*
 * msr: a multiboot guest that reads and writes MSRs, for the MSR traces (`--trap-msr`). It reads
 * APIC_BASE, writes a new PAT and reads it back, reads APIC_BASE again, and checks that each read
 * gave what the CPU holds: the value written, the same value twice. Whether or not kvmscope traps
 * these MSRs, the guest must see no difference. Success prints "msr ok" and exits through
 * isa-debug-exit with 0x41 (status 131); a failed check N exits with N (status 2N+1).
 *
 * MSR accesses, exactly: rdmsr APIC_BASE twice, wrmsr PAT once, rdmsr PAT once.
 */
    .code32
    .section .multiboot, "a"
    .align 4
    .long 0x1badb002
    .long 0x00000003
    .long -(0x1badb002 + 0x00000003)

    .text
    .globl _start
_start:
    mov $stack_top, %esp

    mov $0x1b, %ecx                 /* APIC_BASE */
    rdmsr
    mov %eax, %esi
    mov %edx, %edi

    mov $0x277, %ecx                /* PAT: WB, WC, UC-, UC in each half */
    mov $0x00070106, %eax
    mov $0x00070106, %edx
    wrmsr
    xor %eax, %eax
    xor %edx, %edx
    rdmsr
    cmp $0x00070106, %eax
    jne fail1
    cmp $0x00070106, %edx
    jne fail1

    mov $0x1b, %ecx
    rdmsr
    cmp %esi, %eax
    jne fail2
    cmp %edi, %edx
    jne fail2

    mov $ok, %esi
    call puts
    mov $0x41, %eax
    jmp exit
fail1:
    mov $1, %eax
    jmp exit
fail2:
    mov $2, %eax
    jmp exit

#include "serial32.inc"

    .section .rodata
ok:
    .asciz "msr ok\n"

    .bss
    .align 16
    .skip 4096
stack_top:
