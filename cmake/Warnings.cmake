# Every target of ours gets the same strict warnings; third-party headers come in as SYSTEM.
function(gpuwarm_warnings target)
  target_compile_options(${target} PRIVATE
    -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion -Wnon-virtual-dtor
    -Wold-style-cast -Wcast-align -Woverloaded-virtual -Wformat=2
    -Wimplicit-fallthrough)
  if(GPUWARM_WERROR)
    # GCC 12 at -O3 reports -Wrestrict inside std::string's operator+ (GCC bug 105329):
    # a false positive in the library, so it stays a warning rather than an error.
    target_compile_options(${target} PRIVATE -Werror -Wno-error=restrict)
  endif()
endfunction()
