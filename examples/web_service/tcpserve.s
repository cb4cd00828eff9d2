# tcpserve ADDR PORT PROGRAM [ARG...]: listen on the IPv4 address ADDR
# (0.0.0.0 for every interface) and TCP port PORT; for each connection, run
# PROGRAM ARG... in a child process with the connection as its stdin and
# stdout (stderr stays the server's), as inetd or tcpserver would. SIGTERM
# makes it exit 0; children are reaped by the kernel (SA_NOCLDWAIT).
#
# A static x86_64 Linux program with no libc and no interpreter: the whole
# ELF file is this one section, its headers written out below, so that the
# web_service example has a real server that builds with builtins only.
# tcpserve.hex holds its bytes; rebuild them after a change with GNU as
# and objcopy:
#
#   as --64 -o tcpserve.o tcpserve.s
#   objcopy -O binary -j .text tcpserve.o tcpserve
#   od -An -v -tx1 tcpserve | tr -d ' ' > tcpserve.hex
#
# (nix/examples_test.go checks that the two agree when as and objcopy are
# installed.)

        .intel_syntax noprefix
        .set BASE, 0x400000

        .set SYS_write, 1
        .set SYS_close, 3
        .set SYS_rt_sigaction, 13
        .set SYS_dup2, 33
        .set SYS_socket, 41
        .set SYS_accept, 43
        .set SYS_bind, 49
        .set SYS_listen, 50
        .set SYS_setsockopt, 54
        .set SYS_fork, 57
        .set SYS_execve, 59
        .set SYS_exit_group, 231

        .text
ehdr:                                   # Elf64_Ehdr
        .byte 0x7f, 'E', 'L', 'F', 2, 1, 1, 0   # 64-bit, little-endian, version 1, System V
        .quad 0
        .word 2                         # e_type: ET_EXEC
        .word 0x3e                      # e_machine: x86-64
        .long 1                         # e_version
        .quad BASE + (_start - ehdr)    # e_entry
        .quad phdr - ehdr               # e_phoff
        .quad 0                         # e_shoff: no section headers
        .long 0                         # e_flags
        .word phdr - ehdr               # e_ehsize
        .word end_phdr - phdr           # e_phentsize
        .word 1                         # e_phnum
        .word 0, 0, 0                   # e_shentsize, e_shnum, e_shstrndx
phdr:                                   # Elf64_Phdr: the whole file, read and execute
        .long 1                         # p_type: PT_LOAD
        .long 5                         # p_flags: PF_R | PF_X
        .quad 0                         # p_offset
        .quad BASE                      # p_vaddr
        .quad BASE                      # p_paddr
        .quad end - ehdr                # p_filesz
        .quad end - ehdr                # p_memsz
        .quad 0x1000                    # p_align
end_phdr:

# Registers kept for the whole run:
#   rbx  the initial stack: argc, argv[0..argc-1], NULL, envp
#   r13  ADDR (network order)     r14  PORT (network order)
#   r15  the listening socket     r12  the accepted connection
_start:
        mov rbx, rsp
        cmp qword ptr [rbx], 4          # argc >= 4: tcpserve ADDR PORT PROGRAM
        jb usage

        # ADDR: four decimal octets, 0-255, separated by dots.
        mov rsi, [rbx + 16]
        xor r13d, r13d
        xor ecx, ecx                    # bit position of the next octet
octet:
        xor eax, eax
        xor edx, edx                    # digits in this octet
digit:
        movzx edi, byte ptr [rsi]
        inc rsi
        lea r8d, [rdi - '0']
        cmp r8d, 9
        ja end_octet
        imul eax, eax, 10
        add eax, r8d
        cmp eax, 255
        ja usage
        inc edx
        cmp edx, 3
        ja usage
        jmp digit
end_octet:
        test edx, edx
        jz usage
        shl eax, cl
        or r13d, eax
        add ecx, 8
        cmp ecx, 32
        je last_octet
        cmp edi, '.'
        jne usage
        jmp octet
last_octet:
        test edi, edi
        jnz usage

        # PORT: decimal, 1-65535.
        mov rsi, [rbx + 24]
        xor eax, eax
port_digit:
        movzx edi, byte ptr [rsi]
        inc rsi
        test edi, edi
        jz end_port
        sub edi, '0'
        cmp edi, 9
        ja usage
        imul eax, eax, 10
        add eax, edi
        cmp eax, 65535
        ja usage
        jmp port_digit
end_port:
        test eax, eax
        jz usage
        xchg al, ah                     # to network order
        mov r14d, eax

        # Scratch space: a struct sigaction at [rsp], a sockaddr_in at
        # [rsp + 32].
        sub rsp, 64

        # SIGCHLD: default action, but the kernel reaps the children.
        mov qword ptr [rsp], 0          # sa_handler: SIG_DFL
        mov qword ptr [rsp + 8], 2      # sa_flags: SA_NOCLDWAIT
        mov qword ptr [rsp + 16], 0     # sa_restorer
        mov qword ptr [rsp + 24], 0     # sa_mask
        mov eax, SYS_rt_sigaction
        mov edi, 17                     # SIGCHLD
        mov rsi, rsp
        xor edx, edx
        mov r10d, 8
        syscall

        # SIGTERM: exit 0 (the handler never returns, but x86-64 needs a
        # restorer for any handler).
        lea rax, [rip + on_term]
        mov [rsp], rax
        mov qword ptr [rsp + 8], 0x04000000     # SA_RESTORER
        mov [rsp + 16], rax
        mov eax, SYS_rt_sigaction
        mov edi, 15                     # SIGTERM
        mov rsi, rsp
        xor edx, edx
        mov r10d, 8
        syscall

        mov eax, SYS_socket
        mov edi, 2                      # AF_INET
        mov esi, 1                      # SOCK_STREAM
        xor edx, edx
        syscall
        lea rsi, [rip + msg_socket]
        mov edx, msg_socket_end - msg_socket
        test rax, rax
        js fail
        mov r15, rax

        mov dword ptr [rsp], 1
        mov eax, SYS_setsockopt
        mov rdi, r15
        mov esi, 1                      # SOL_SOCKET
        mov edx, 2                      # SO_REUSEADDR
        mov r10, rsp
        mov r8d, 4
        syscall

        mov word ptr [rsp + 32], 2      # sin_family: AF_INET
        mov word ptr [rsp + 34], r14w   # sin_port
        mov dword ptr [rsp + 36], r13d  # sin_addr
        mov qword ptr [rsp + 40], 0
        mov eax, SYS_bind
        mov rdi, r15
        lea rsi, [rsp + 32]
        mov edx, 16
        syscall
        lea rsi, [rip + msg_bind]
        mov edx, msg_bind_end - msg_bind
        test rax, rax
        js fail

        mov eax, SYS_listen
        mov rdi, r15
        mov esi, 64
        syscall
        lea rsi, [rip + msg_listen]
        mov edx, msg_listen_end - msg_listen
        test rax, rax
        js fail

accept:
        mov eax, SYS_accept
        mov rdi, r15
        xor esi, esi
        xor edx, edx
        syscall
        cmp rax, -4                     # EINTR
        je accept
        cmp rax, -103                   # ECONNABORTED
        je accept
        lea rsi, [rip + msg_accept]
        mov edx, msg_accept_end - msg_accept
        test rax, rax
        js fail
        mov r12, rax

        mov eax, SYS_fork
        syscall
        test rax, rax
        jz child
        mov eax, SYS_close              # the parent (or a failed fork): the
        mov rdi, r12                    # child has the connection
        syscall
        jmp accept

child:
        mov eax, SYS_close
        mov rdi, r15
        syscall
        # A client that stops talking holds its child for 10 s at most.
        mov qword ptr [rsp], 10         # struct timeval: 10 s
        mov qword ptr [rsp + 8], 0
        mov eax, SYS_setsockopt
        mov rdi, r12
        mov esi, 1                      # SOL_SOCKET
        mov edx, 20                     # SO_RCVTIMEO
        mov r10, rsp
        mov r8d, 16
        syscall
        mov eax, SYS_setsockopt
        mov rdi, r12
        mov esi, 1
        mov edx, 21                     # SO_SNDTIMEO
        mov r10, rsp
        mov r8d, 16
        syscall
        mov eax, SYS_dup2
        mov rdi, r12
        xor esi, esi
        syscall
        mov eax, SYS_dup2
        mov rdi, r12
        mov esi, 1
        syscall
        cmp r12, 1
        jbe exec
        mov eax, SYS_close
        mov rdi, r12
        syscall
exec:
        mov rdi, [rbx + 32]             # PROGRAM
        lea rsi, [rbx + 32]             # its argv: PROGRAM ARG... NULL
        mov rax, [rbx]
        lea rdx, [rbx + rax * 8 + 16]   # envp, after argv's NULL
        mov eax, SYS_execve
        syscall
        lea rsi, [rip + msg_exec]
        mov edx, msg_exec_end - msg_exec
        mov r12d, 127
        jmp fail_with

usage:
        lea rsi, [rip + msg_usage]
        mov edx, msg_usage_end - msg_usage
        mov r12d, 2
        jmp fail_with

# fail: write the message at rsi (rdx bytes) and the error number -rax to
# stderr, and exit 1.
fail:
        mov r12d, 1
fail_with:
        neg rax
        mov r8, rax
        mov eax, SYS_write
        mov edi, 2
        syscall
        cmp r12d, 2                     # usage: no error number
        je exit
        # The error number in decimal, then a newline, built backwards on
        # the stack.
        lea rsi, [rsp - 1]
        mov byte ptr [rsi], 10
        mov rax, r8
        mov ecx, 10
decimal:
        xor edx, edx
        div rcx
        add dl, '0'
        dec rsi
        mov [rsi], dl
        test rax, rax
        jnz decimal
        lea rdx, [rsp]
        sub rdx, rsi
        mov eax, SYS_write
        mov edi, 2
        syscall
exit:
        mov edi, r12d
        mov eax, SYS_exit_group
        syscall

on_term:
        xor edi, edi
        mov eax, SYS_exit_group
        syscall

msg_usage:
        .ascii "usage: tcpserve ADDR PORT PROGRAM [ARG...]\n"
msg_usage_end:
msg_socket:
        .ascii "tcpserve: socket failed: errno "
msg_socket_end:
msg_bind:
        .ascii "tcpserve: bind failed (is the address local and the port free?): errno "
msg_bind_end:
msg_listen:
        .ascii "tcpserve: listen failed: errno "
msg_listen_end:
msg_accept:
        .ascii "tcpserve: accept failed: errno "
msg_accept_end:
msg_exec:
        .ascii "tcpserve: cannot run PROGRAM: errno "
msg_exec_end:
end:
