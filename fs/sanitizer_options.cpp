// Built into every program of a sanitizer build (DIOFS_SANITIZE) only: the options its
// sanitizers run with, wherever the program is started (ctest, gtest's test discovery at build
// time, a mount test starting the daemon, a person). ASAN_OPTIONS, UBSAN_OPTIONS and
// TSAN_OPTIONS in the environment add to them and override them.
//
// Every report must fail the program that has it, with the report on its stderr (the daemon's
// log in a mount test, which the test shows when the daemon does not exit 0):
// - ASan stops at the first error, exit status 1; LeakSanitizer (part of ASan) checks at exit and
//   makes the status 1 when anything is left. A use of a stack variable after its function
//   returned, and an initialization-order dependency between files, are checked too.
// - UBSan: the code is built with -fno-sanitize-recover, so the first report ends the program;
//   the stack says where.
// - TSan reports every race it sees and makes the exit status 66 at the end.

extern "C" {

const char* __asan_default_options() {
    return "detect_leaks=1:detect_stack_use_after_return=1:check_initialization_order=1:"
           "strict_init_order=1";
}

const char* __ubsan_default_options() { return "print_stacktrace=1:halt_on_error=1"; }

const char* __tsan_default_options() { return "second_deadlock_stack=1"; }

}  // extern "C"
