//! SIGSEGV/SIGBUS stack-overflow reporting on a sigaltstack.
