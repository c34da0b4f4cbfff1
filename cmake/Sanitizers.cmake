if(GPUWARM_SANITIZE)
  # Applied globally so the fake NVML library and the tests share one runtime.
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=address,undefined)
endif()
