// An LD_PRELOAD shim for bench/cuinit_opens.py: writes "[openlog] PATH" to stderr for every open of a
// /dev/nvidia* file, so a lent machine (no strace there) shows which GPUs' device files a CUDA call opens.
// Build: cc -shared -fPIC -O1 -o .devbin/openlog.so bench/openlog.c -ldl
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void note(const char* path) {
  if (path != NULL && strncmp(path, "/dev/nvidia", 11) == 0) {
    char line[512];
    int n = snprintf(line, sizeof line, "[openlog] %s\n", path);
    if (n > 0) {
      ssize_t w = write(2, line, (size_t)(n < (int)sizeof line ? n : (int)sizeof line - 1));
      (void)w;
    }
  }
}

// O_CREAT/O_TMPFILE pass a mode; reading it otherwise is harmless for these variadic calls on x86-64.
#define OPEN_LIKE(name)                                                    \
  int name(const char* path, int flags, ...) {                             \
    va_list args;                                                          \
    va_start(args, flags);                                                 \
    int mode = va_arg(args, int);                                          \
    va_end(args);                                                          \
    note(path);                                                            \
    int (*real)(const char*, int, ...) = dlsym(RTLD_NEXT, #name);          \
    return real(path, flags, mode);                                        \
  }
#define OPENAT_LIKE(name)                                                  \
  int name(int dir, const char* path, int flags, ...) {                    \
    va_list args;                                                          \
    va_start(args, flags);                                                 \
    int mode = va_arg(args, int);                                          \
    va_end(args);                                                          \
    note(path);                                                            \
    int (*real)(int, const char*, int, ...) = dlsym(RTLD_NEXT, #name);     \
    return real(dir, path, flags, mode);                                   \
  }
OPEN_LIKE(open)
OPEN_LIKE(open64)
OPENAT_LIKE(openat)
OPENAT_LIKE(openat64)

int __open_2(const char* path, int flags) {
  note(path);
  int (*real)(const char*, int) = dlsym(RTLD_NEXT, "__open_2");
  return real(path, flags);
}
int __open64_2(const char* path, int flags) {
  note(path);
  int (*real)(const char*, int) = dlsym(RTLD_NEXT, "__open64_2");
  return real(path, flags);
}
