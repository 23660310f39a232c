/*
 * bump: a guest in C built without optimisation and with debug information (-O0 -g), for gdb at
 * the source level (`break bump if i == 5`, `next`, `reverse-next`, `reverse-finish`).
 * `guest_main` calls `bump(i)` for i = 0 .. 7; `bump` adds i to `total`, keeps the running total
 * in `history[i]`, and writes i to the POST port 0x80 (an `out` followed by a `nop`). The guest
 * ends through isa-debug-exit with the total (28: status 57).
 */
#include <stdint.h>

__asm__(".pushsection .text\n"
        ".globl _start\n"
        "_start:\n"
        "  lea stack_top(%rip), %rsp\n"
        "  xor %ebp, %ebp\n"
        "  call guest_main\n"
        "1: hlt\n"
        "  jmp 1b\n"
        ".popsection\n"
        ".pushsection .bss\n"
        ".align 16\n"
        "  .skip 8192\n"
        "stack_top:\n"
        ".popsection\n");

volatile int total;
int history[8];

static void post(uint8_t code) {
    __asm__ volatile("outb %0, $0x80\n\tnop" : : "a"(code));
}

void bump(int i) {
    total += i;
    history[i] = total;
    post((uint8_t)i);
}

void guest_main(void) {
    for (int i = 0; i < 8; i++)
        bump(i);
    __asm__ volatile("outl %0, %1" : : "a"((uint32_t)total), "Nd"((uint16_t)0xf4));
}
