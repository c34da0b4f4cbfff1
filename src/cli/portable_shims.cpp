// Only in the portable build (GPUWARM_PORTABLE): libstdc++ is linked statically,
// and GCC 12's libstdc++.a, built on glibc 2.36, calls arc4random (through
// std::random_device, pulled in by its string instantiations; gpuwarm itself
// never uses it). glibc has arc4random only since 2.36, which would keep the
// binary off Ubuntu 22.04 (2.35) and RHEL 9 (2.34). This definition, in the
// executable, is the one the static libstdc++ binds to; getrandom exists since
// glibc 2.25. With libgcc left shared, the binary's floor is glibc 2.34.

#include <sys/random.h>

#include <cerrno>
#include <cstdint>

extern "C" std::uint32_t arc4random() {
  std::uint32_t value = 0;
  for (;;) {
    ssize_t n = ::getrandom(&value, sizeof value, 0);
    if (n == static_cast<ssize_t>(sizeof value)) {
      return value;
    }
    if (n < 0 && errno != EINTR) {
      return value;  // not reached on Linux >= 3.17; random_device's callers only seed with it
    }
  }
}
