# What `cmake --install` and CPack put in the .deb, the .rpm and the tarball
# (scripts/package.sh): the portable binary, the bundled libsimdjson beside it
# (found through an $ORIGIN run path), the man page (pandoc), bash and zsh
# completions (from `gpuwarm completion`), the guard's drop-in, docs.

include(GNUInstallDirs)

# Same relative layout in every package: bin/gpuwarm and lib/gpuwarm/libsimdjson.so.N.
set(GPUWARM_PRIVATE_LIBDIR "lib/gpuwarm")
set_target_properties(gpuwarm PROPERTIES INSTALL_RPATH "\$ORIGIN/../${GPUWARM_PRIVATE_LIBDIR}")
target_link_options(gpuwarm PRIVATE -Wl,--enable-new-dtags)
get_target_property(simdjson_file simdjson::simdjson IMPORTED_LOCATION_RELWITHDEBINFO)
get_target_property(simdjson_soname simdjson::simdjson IMPORTED_SONAME_RELWITHDEBINFO)
if(NOT simdjson_file)
  get_target_property(simdjson_file simdjson::simdjson LOCATION)
endif()
install(FILES "${simdjson_file}" DESTINATION "${GPUWARM_PRIVATE_LIBDIR}" RENAME "${simdjson_soname}"
        PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)

# Generated beside the binary at build time.
set(gen "${CMAKE_BINARY_DIR}/package-files")
find_program(PANDOC pandoc)
if(NOT PANDOC)
  message(FATAL_ERROR "packaging needs pandoc for the man page (apt-get install pandoc)")
endif()
add_custom_command(OUTPUT "${gen}/gpuwarm.1.gz"
  COMMAND ${CMAKE_COMMAND} -E make_directory "${gen}"
  COMMAND ${PANDOC} -f markdown-smart -s -t man "${PROJECT_SOURCE_DIR}/docs/gpuwarm.1.md" -M "footer=gpuwarm ${PROJECT_VERSION}"
          -o "${gen}/gpuwarm.1"
  COMMAND gzip -9nf "${gen}/gpuwarm.1"
  DEPENDS "${PROJECT_SOURCE_DIR}/docs/gpuwarm.1.md" VERBATIM)
add_custom_command(OUTPUT "${gen}/gpuwarm.bash" "${gen}/_gpuwarm"
  COMMAND ${CMAKE_COMMAND} -E make_directory "${gen}"
  COMMAND sh -c "\"$1\" completion bash > \"$2/gpuwarm.bash\" && \"$1\" completion zsh > \"$2/_gpuwarm\"" sh
          "$<TARGET_FILE:gpuwarm>" "${gen}"
  DEPENDS gpuwarm VERBATIM)
# The guard drop-in, pointing at the packaged binary.
file(READ "${PROJECT_SOURCE_DIR}/contrib/systemd/nvidia-persistenced.service.d/40-gpuwarm-guard.conf" guard)
string(REPLACE "/usr/local/bin/gpuwarm" "${CMAKE_INSTALL_PREFIX}/bin/gpuwarm" guard "${guard}")
file(WRITE "${gen}/40-gpuwarm-guard.conf" "${guard}")
add_custom_command(OUTPUT "${gen}/changelog.gz"
  COMMAND sh -c "gzip -9nc \"$1\" > \"$2\"" sh "${PROJECT_SOURCE_DIR}/packaging/changelog" "${gen}/changelog.gz"
  DEPENDS "${PROJECT_SOURCE_DIR}/packaging/changelog" VERBATIM)
add_custom_target(gpuwarm_package_files ALL
  DEPENDS "${gen}/gpuwarm.1.gz" "${gen}/gpuwarm.bash" "${gen}/_gpuwarm" "${gen}/changelog.gz")

set(GPUWARM_ZSH_COMPLETION_DIR "share/zsh/vendor-completions" CACHE STRING "zsh completion directory (RPM: share/zsh/site-functions)")
install(FILES "${gen}/gpuwarm.1.gz" DESTINATION "${CMAKE_INSTALL_MANDIR}/man1")
install(FILES "${gen}/gpuwarm.bash" DESTINATION "share/bash-completion/completions" RENAME gpuwarm)
install(FILES "${gen}/_gpuwarm" DESTINATION "${GPUWARM_ZSH_COMPLETION_DIR}")
install(FILES "${gen}/40-gpuwarm-guard.conf" DESTINATION "share/gpuwarm")
# The metrics timer (textfile for node_exporter) and the exporter ship disabled: enable one of them
# (`systemctl enable --now gpuwarm-metrics.timer` or `gpuwarm-exporter.service`).
install(FILES "${PROJECT_SOURCE_DIR}/contrib/systemd/gpuwarm-metrics.service"
              "${PROJECT_SOURCE_DIR}/contrib/systemd/gpuwarm-metrics.timer"
              "${PROJECT_SOURCE_DIR}/contrib/systemd/gpuwarm-exporter.service" DESTINATION "lib/systemd/system")
# The node's locks, made at boot for the units that may not create them (ProtectSystem=strict).
install(FILES "${PROJECT_SOURCE_DIR}/contrib/systemd/gpuwarm.tmpfiles" DESTINATION "lib/tmpfiles.d" RENAME gpuwarm.conf)
install(FILES "${PROJECT_SOURCE_DIR}/contrib/prometheus/gpuwarm.rules.yml" DESTINATION "share/gpuwarm/prometheus")
# Scheduler integrations (README "Schedulers"): Slurm's health check and prolog, NHC's check, Kubernetes.
install(PROGRAMS "${PROJECT_SOURCE_DIR}/contrib/slurm/gpuwarm-healthcheck" "${PROJECT_SOURCE_DIR}/contrib/slurm/gpuwarm-prolog"
        DESTINATION "share/gpuwarm/slurm")
install(FILES "${PROJECT_SOURCE_DIR}/contrib/nhc/gpuwarm.nhc" DESTINATION "share/gpuwarm/nhc")
install(DIRECTORY "${PROJECT_SOURCE_DIR}/contrib/kubernetes/" DESTINATION "share/gpuwarm/kubernetes")
install(FILES "${PROJECT_SOURCE_DIR}/packaging/copyright" DESTINATION "share/doc/gpuwarm")
install(FILES "${PROJECT_SOURCE_DIR}/README.md" "${gen}/changelog.gz" DESTINATION "share/doc/gpuwarm")

set(CPACK_PACKAGE_NAME gpuwarm)
set(CPACK_PACKAGE_VENDOR "the gpuwarm authors")
set(CPACK_PACKAGE_CONTACT "gpuwarm maintainers <gpuwarm@example.org>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "keep NVIDIA GPUs initialized through nvidia-persistenced, and diagnose why not")
string(CONCAT CPACK_PACKAGE_DESCRIPTION
  "gpuwarm diagnoses a GPU node against the persistence runbook\n"
  "(nvidia-persistenced under systemd, not nvidia-smi -pm 1), fixes it\n"
  "through systemd, verifies, guards the unit against a half-updated\n"
  "driver, times cold starts, watches clock swings and lints configs for\n"
  "persistence anti-patterns.")
set(CPACK_RESOURCE_FILE_LICENSE "${PROJECT_SOURCE_DIR}/LICENSE")
set(CPACK_PACKAGE_FILE_NAME "gpuwarm-${PROJECT_VERSION}-linux-x86_64")
set(CPACK_STRIP_FILES ON)
set(CPACK_GENERATOR "DEB;RPM;TGZ")
# The binary needs glibc >= 2.34 (its highest symbol version), libgcc_s, and the system's libstdc++.so.6
# for the bundled simdjson only (GLIBCXX_3.4.21: any GCC >= 5 runtime). libsystemd, libkmod, libmicrohttpd,
# NVML and libcuda are loaded when a command needs them.
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "libc6 (>= 2.34), libgcc-s1, libstdc++6 (>= 5)")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "libsystemd0, libkmod2, libmicrohttpd12 | libmicrohttpd12t64")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "nvidia-persistenced, prometheus-node-exporter")
# Its units on install, upgrade and removal (packaging/deb: debhelper's conventions, written out).
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA "${PROJECT_SOURCE_DIR}/packaging/deb/postinst;${PROJECT_SOURCE_DIR}/packaging/deb/prerm;${PROJECT_SOURCE_DIR}/packaging/deb/postrm")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
set(CPACK_RPM_FILE_NAME RPM-DEFAULT)
set(CPACK_RPM_PACKAGE_LICENSE "MIT")
set(CPACK_RPM_PACKAGE_GROUP "Applications/System")
set(CPACK_RPM_PACKAGE_AUTOREQPROV OFF)
set(CPACK_RPM_PACKAGE_REQUIRES "glibc >= 2.34, libgcc, libstdc++")
# CPack's RPM generator reads a description of its own; rpmbuild here drops Suggests, so the description names them.
string(CONCAT CPACK_RPM_PACKAGE_DESCRIPTION "${CPACK_PACKAGE_DESCRIPTION}\n\n"
  "Loaded when a command needs them: systemd-libs (fix, verify), kmod-libs\n"
  "(reload-modules), libmicrohttpd (metrics --listen).")
set(CPACK_RPM_POST_INSTALL_SCRIPT_FILE "${PROJECT_SOURCE_DIR}/packaging/rpm/post")
set(CPACK_RPM_PRE_UNINSTALL_SCRIPT_FILE "${PROJECT_SOURCE_DIR}/packaging/rpm/preun")
set(CPACK_RPM_POST_UNINSTALL_SCRIPT_FILE "${PROJECT_SOURCE_DIR}/packaging/rpm/postun")
set(CPACK_RPM_EXCLUDE_FROM_AUTO_FILELIST_ADDITION
    /usr/share/man /usr/share/man/man1 /usr/share/bash-completion /usr/share/bash-completion/completions
    /usr/share/zsh /usr/share/zsh/site-functions /usr/share/zsh/vendor-completions /usr/lib)
set(CPACK_ARCHIVE_FILE_NAME "gpuwarm-${PROJECT_VERSION}-linux-x86_64")
include(CPack)
