/*
 * emulate: a 64-bit guest that runs at CPL0 what an emulating host's KVM (PVM) cannot: an `int3`
 * handled by its own #BP handler, `popcnt` (register and memory), `stac`/`clac`, and
 * `lock cmpxchg16b` (equal and not equal), `fwait` with no x87 exception pending, and the x87/SSE
 * control instructions `ldmxcsr`/`stmxcsr` (a round trip), `fldcw` (read back by `fnstcw`) and
 * `fnclex`, and the segment checks `lsl`, `lar`, `verr`, `verw` over a GDT of its own (Linux reads
 * its CPU number with `lsl`). On such a host kvmscope delivers the int3 as #BP and completes the
 * others; on VT-x they simply run. Each result is checked: success exits through
 * isa-debug-exit with 0x21 (status 67), a failed check with its number N (status 2N+1).
 */
    .code64
    .text
    .globl _start
_start:
    lea stack_top(%rip), %rsp
    /* IDT vector 3: a 64-bit interrupt gate to bp_handler on kvmscope's code selector 0x08. */
    lea bp_handler(%rip), %rax
    lea idt + 3 * 16(%rip), %rdi
    mov %ax, (%rdi)
    movw $0x08, 2(%rdi)
    movw $0x8e00, 4(%rdi)
    shr $16, %rax
    mov %ax, 6(%rdi)
    shr $16, %rax
    mov %eax, 8(%rdi)
    movl $0, 12(%rdi)
    lidt idt_ptr(%rip)

    mov $1, %r15
    int3
    cmpl $1, bp_count(%rip)
    jne fail

    mov $2, %r15
    mov $0xf0f0, %rbx
    popcnt %rbx, %rax
    cmp $8, %rax
    jne fail
    mov $3, %r15
    popcnt value(%rip), %rcx
    cmp $16, %rcx
    jne fail

    mov $4, %r15
    stac
    pushfq
    pop %rax
    bt $18, %rax
    jnc fail
    mov $5, %r15
    clac
    pushfq
    pop %rax
    bt $18, %rax
    jc fail

    mov $6, %r15
    lea pair(%rip), %rdi
    mov $1, %rax
    mov $2, %rdx
    mov $3, %rbx
    mov $4, %rcx
    lock cmpxchg16b (%rdi)
    jnz fail
    cmpq $3, (%rdi)
    jne fail
    cmpq $4, 8(%rdi)
    jne fail
    mov $7, %r15
    mov $9, %rax
    mov $9, %rdx
    lock cmpxchg16b (%rdi)
    jz fail
    cmp $3, %rax
    jne fail
    cmp $4, %rdx
    jne fail

    mov $8, %r15
    fninit
    fwait                       /* nothing pending: it just ends */
    mov $0x1234, %rax
    cmp $0x1234, %rax
    jne fail

    mov $9, %r15
    mov %cr4, %rax
    or $0x200, %rax             /* CR4.OSFXSR: SSE instructions allowed (else #UD) */
    mov %rax, %cr4
    movl $0x7f80, mxcsr_in(%rip)   /* every exception masked, round toward zero */
    ldmxcsr mxcsr_in(%rip)
    stmxcsr mxcsr_out(%rip)
    cmpl $0x7f80, mxcsr_out(%rip)
    jne fail
    movl $0x1f80, mxcsr_in(%rip)   /* back to the default */
    ldmxcsr mxcsr_in(%rip)

    mov $10, %r15
    movw $0x027f, fcw_in(%rip)     /* double precision */
    fldcw fcw_in(%rip)
    fnstcw fcw_out(%rip)
    cmpw $0x027f, fcw_out(%rip)
    jne fail

    mov $11, %r15
    fnclex
    fnstsw %ax
    test $0x80ff, %ax
    jnz fail

    /* Segment checks over its own GDT (see `gdt` below); kvmscope's code selector 0x08 stays. */
    lgdt gdt_ptr(%rip)
    mov $12, %r15
    mov $0x30, %eax
    lsl %eax, %ecx              /* read-only data, DPL 3, byte limit 0x1234 */
    jnz fail
    cmp $0x1234, %ecx
    jne fail
    mov $13, %r15
    lar %eax, %ecx
    jnz fail
    cmp $0xf100, %ecx
    jne fail
    mov $14, %r15
    mov $0x18, %rax
    lsl %rax, %rax              /* as Linux's vdso_read_cpunode: a page-granular flat limit */
    jnz fail
    mov $0xffffffff, %ecx
    cmp %rcx, %rax
    jne fail
    mov $15, %r15
    mov $0x20, %eax
    lar %eax, %ecx              /* the 64-bit TSS (busy), a 16-byte system descriptor */
    jnz fail
    cmp $0x00808b00, %ecx
    jne fail
    mov $16, %r15
    mov $0x30, %eax
    verr %ax
    jnz fail
    mov $17, %r15
    verw %ax                    /* read-only: not writable */
    jz fail
    mov $18, %r15
    mov $0x38, %eax
    verr %ax                    /* execute-only code: not readable */
    jz fail
    mov $19, %r15
    mov $0x18, %eax
    verw %ax
    jnz fail
    mov $20, %r15
    xor %eax, %eax
    mov $0x77, %ecx
    lsl %eax, %ecx              /* the null selector: ZF clear, nothing loaded */
    jz fail
    cmp $0x77, %ecx
    jne fail

    lea ok(%rip), %rsi
    mov $0x3f8, %dx
1:  lodsb
    test %al, %al
    jz 2f
    out %al, %dx
    jmp 1b
2:  mov $0x21, %eax
    out %eax, $0xf4
    hlt

fail:
    mov %r15, %rax
    out %eax, $0xf4
    hlt

bp_handler:
    incl bp_count(%rip)
    iretq

    .section .rodata
ok:
    .asciz "emulate ok\n"

    .data
    .align 16
pair:
    .quad 1, 2
value:
    .quad 0xffff
bp_count:
    .long 0
mxcsr_in:
    .long 0
mxcsr_out:
    .long 0
fcw_in:
    .word 0
fcw_out:
    .word 0
    .align 16
gdt:
    .quad 0
    .quad 0x00af9b000000ffff    /* 0x08: 64-bit code, as kvmscope's */
    .quad 0x00cf9b000000ffff    /* 0x10: 32-bit code */
    .quad 0x00cf93000000ffff    /* 0x18: data, flat (page-granular limit) */
    .quad 0x00808b0000000067    /* 0x20: 64-bit TSS, busy: two slots */
    .quad 0
    .quad 0x0000f10000001234    /* 0x30: read-only data, DPL 3, limit 0x1234 */
    .quad 0x0000980000000fff    /* 0x38: execute-only code */
gdt_ptr:
    .word 8 * 8 - 1
    .quad gdt
    .align 16
idt:
    .skip 16 * 4
idt_ptr:
    .word 16 * 4 - 1
    .quad idt

    .bss
    .align 16
    .skip 4096
stack_top:
