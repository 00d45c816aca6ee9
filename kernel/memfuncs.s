# memcpy, memset, memmove, memcmp and bcmp for the kernel and the user
# programs (no libc): the compiler emits calls to them. AT&T syntax.

    .text
    .global memcpy
memcpy:
    movq %rdi, %rax
    movq %rdx, %rcx
    rep movsb
    ret

    .global memset
memset:
    movq %rdi, %r9
    movl %esi, %eax
    movq %rdx, %rcx
    rep stosb
    movq %r9, %rax
    ret

    .global memmove
memmove:
    movq %rdi, %rax
    cmpq %rsi, %rdi
    jbe 1f
    leaq -1(%rsi, %rdx), %rsi
    leaq -1(%rdi, %rdx), %rdi
    movq %rdx, %rcx
    std
    rep movsb
    cld
    ret
1:
    movq %rdx, %rcx
    rep movsb
    ret

    .global memcmp
    .global bcmp
memcmp:
bcmp:
    xorl %eax, %eax
    testq %rdx, %rdx
    jz 2f
1:
    movzbl (%rdi), %eax
    movzbl (%rsi), %ecx
    subl %ecx, %eax
    jnz 2f
    incq %rdi
    incq %rsi
    decq %rdx
    jnz 1b
2:
    ret
