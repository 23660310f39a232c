/*
 * demo: the built-in guest `kvmscope` runs with no arguments. It never ends, and makes varied exits at
 * a pace a person can follow (about ten rounds a second, paced by the TSC):
 *   - a line on the serial port each round ("demo: round N ..."), polling the line status register;
 *   - POST codes on port 0x80, a CMOS-style index/data pair on 0x70/0x71, a read of port 0x61;
 *   - MMIO: a doorbell write to 0xd0000000 and a status read from 0xd0000004 (a "device"), and a
 *     read-modify-write of a counter at 0xe0001000 (another region);
 *   - registers that change every round (a counter in EBX, a Fibonacci pair in ESI/EDI, ECX loops);
 *   - echo: whatever is typed into the console comes back as "you typed: X".
 */
    .code32
    .section .multiboot, "a"
    .align 4
    .long 0x1badb002, 0, -0x1badb002

    .set TSC_PAUSE_HI, 0            /* pause between rounds: 0x0c000000 TSC cycles (~0.1 s at 2 GHz) */
    .set TSC_PAUSE_LO, 0x0c000000

    .text
    .globl _start
_start:
    mov $stack_top, %esp
    xor %ebx, %ebx                  /* round counter */
    mov $0, %esi                    /* Fibonacci pair */
    mov $1, %edi
    mov $banner, %eax
    call puts_eax

round:
    inc %ebx
    /* Fibonacci step: (esi, edi) <- (edi, esi + edi) */
    mov %edi, %eax
    add %esi, %edi
    mov %eax, %esi

    /* Serial: "demo: round N fib F\n" */
    mov $msg_round, %eax
    call puts_eax
    mov %ebx, %eax
    call putdec
    mov $msg_fib, %eax
    call puts_eax
    mov %esi, %eax
    call putdec
    mov $'\n', %al
    call putc

    /* Port I/O: POST code, CMOS index/data, port 0x61. */
    mov %bl, %al
    out %al, $0x80
    mov $0x0a, %al
    out %al, $0x70
    in $0x71, %al
    in $0x61, %al

    /* MMIO: doorbell write and status read on one "device", a counter on another. */
    mov %ebx, 0xd0000000
    mov 0xd0000004, %eax
    mov 0xe0001000, %eax
    inc %eax
    mov %eax, 0xe0001000

    /* Echo typed input: LSR bit 0 says a byte is waiting. */
echo:
    mov $0x3fd, %dx
    in %dx, %al
    test $1, %al
    jz pause
    mov $0x3f8, %dx
    in %dx, %al
    mov %al, %cl
    mov $msg_typed, %eax
    call puts_eax
    mov %cl, %al
    call putc
    mov $'\n', %al
    call putc
    jmp echo

    /* Wait TSC_PAUSE cycles, so a person can follow. */
pause:
    rdtsc
    add $TSC_PAUSE_LO, %eax
    adc $TSC_PAUSE_HI, %edx
    mov %eax, %ebp
    mov %edx, %ecx
1:  rdtsc
    cmp %ecx, %edx
    jb 1b
    ja 2f
    cmp %ebp, %eax
    jb 1b
    /* No time in the registers from here: going back in time and forward again, the exits
       after the wait find the registers as they were the first time. */
2:  xor %eax, %eax
    xor %edx, %edx
    xor %ecx, %ecx
    xor %ebp, %ebp
    jmp round

/* puts_eax: print the NUL-terminated string at %eax. */
puts_eax:
    push %esi
    mov %eax, %esi
    call puts
    pop %esi
    ret

#include "serial32.inc"

    .section .rodata
banner:
    .asciz "kvmscope demo guest: type here (tab to the console pane first) and it echoes\n"
msg_round:
    .asciz "demo: round "
msg_fib:
    .asciz " fib "
msg_typed:
    .asciz "you typed: "

    .bss
    .align 16
    .skip 4096
stack_top:
