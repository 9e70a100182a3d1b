# procimage_bpf_object(<target> <source.bpf.c> [INCLUDES dir...])
#
# Compiles a CO-RE BPF program with clang and generates its libbpf skeleton with bpftool.
# Creates an INTERFACE library <target> whose include directory holds <stem>.skel.h, where
# <stem> is the source file name without ".bpf.c". Nothing generated lands in the source tree.
#
# vmlinux.h is a source file, one per architecture, committed compressed
# (plugin_api/vmlinux/<arch>/vmlinux.h.xz, unpacked into the build tree at configure time, and
# installed as include/procimage/vmlinux/<arch>/vmlinux.h); it is never dumped from the build
# machine's running kernel: the same source builds the same objects anywhere, and CO-RE adapts
# them to the kernel they load on. PROCIMAGE_VMLINUX_DIR names another folder that has a
# vmlinux.h (e.g. for a new architecture: `bpftool btf dump file /sys/kernel/btf/vmlinux
# format c > vmlinux.h` on a machine of it).

find_program(PROCIMAGE_CLANG NAMES clang clang-14 REQUIRED)
find_program(PROCIMAGE_BPFTOOL NAMES bpftool PATHS /usr/sbin /sbin REQUIRED)

if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64")
  set(PROCIMAGE_BPF_ARCH x86)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "aarch64|arm64")
  set(PROCIMAGE_BPF_ARCH arm64)
else()
  set(PROCIMAGE_BPF_ARCH ${CMAKE_SYSTEM_PROCESSOR})
endif()

set(_pi_vmlinux_xz "${CMAKE_CURRENT_LIST_DIR}/../plugin_api/vmlinux/${PROCIMAGE_BPF_ARCH}/vmlinux.h.xz")
if(NOT PROCIMAGE_VMLINUX_DIR AND EXISTS "${_pi_vmlinux_xz}")
  # the source tree: unpack the committed header once per build tree (again when it changes)
  set(PROCIMAGE_VMLINUX_DIR "${CMAKE_BINARY_DIR}/vmlinux/${PROCIMAGE_BPF_ARCH}")
  if("${_pi_vmlinux_xz}" IS_NEWER_THAN "${PROCIMAGE_VMLINUX_DIR}/vmlinux.h")
    find_program(PROCIMAGE_XZ NAMES xz REQUIRED)
    file(MAKE_DIRECTORY "${PROCIMAGE_VMLINUX_DIR}")
    execute_process(COMMAND "${PROCIMAGE_XZ}" -dc "${_pi_vmlinux_xz}"
                    OUTPUT_FILE "${PROCIMAGE_VMLINUX_DIR}/vmlinux.h" RESULT_VARIABLE _pi_xz_rc)
    if(NOT _pi_xz_rc EQUAL 0)
      message(FATAL_ERROR "cannot unpack ${_pi_vmlinux_xz}")
    endif()
  endif()
elseif(NOT PROCIMAGE_VMLINUX_DIR AND EXISTS "${PROCIMAGE_VMLINUX_ROOT}/${PROCIMAGE_BPF_ARCH}/vmlinux.h")
  # an installed SDK
  set(PROCIMAGE_VMLINUX_DIR "${PROCIMAGE_VMLINUX_ROOT}/${PROCIMAGE_BPF_ARCH}")
endif()
if(NOT PROCIMAGE_VMLINUX_DIR OR NOT EXISTS "${PROCIMAGE_VMLINUX_DIR}/vmlinux.h")
  message(FATAL_ERROR "no vmlinux.h for the ${PROCIMAGE_BPF_ARCH} architecture: generate one on such a machine "
                      "(bpftool btf dump file /sys/kernel/btf/vmlinux format c) and give its folder as "
                      "-DPROCIMAGE_VMLINUX_DIR=...")
endif()

function(procimage_bpf_object target src)
  cmake_parse_arguments(PARSE_ARGV 2 ARG "" "" "INCLUDES")
  get_filename_component(_abs "${src}" ABSOLUTE)
  get_filename_component(_name "${src}" NAME)
  string(REGEX REPLACE "\\.bpf\\.c$" "" _stem "${_name}")
  set(_out "${CMAKE_CURRENT_BINARY_DIR}/bpf/${_stem}")
  set(_obj "${_out}/${_stem}.bpf.o")
  set(_skel "${_out}/${_stem}.skel.h")
  set(_incs "-I${PROCIMAGE_VMLINUX_DIR}")
  foreach(_d ${ARG_INCLUDES} ${PROCIMAGE_BPF_INCLUDES})
    list(APPEND _incs "-I${_d}")
  endforeach()
  get_filename_component(_srcdir "${_abs}" DIRECTORY)
  list(APPEND _incs "-I${_srcdir}")
  file(GLOB _deps "${_srcdir}/*.h")
  add_custom_command(
    OUTPUT "${_obj}"
    COMMAND ${CMAKE_COMMAND} -E make_directory "${_out}"
    COMMAND "${PROCIMAGE_CLANG}" -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_${PROCIMAGE_BPF_ARCH}
            -Wall -Wno-unused-function ${_incs} -c "${_abs}" -o "${_obj}"
    DEPENDS "${_abs}" ${_deps} ${PROCIMAGE_BPF_DEPENDS}
    COMMENT "BPF ${_name}"
    VERBATIM)
  add_custom_command(
    OUTPUT "${_skel}"
    COMMAND "${PROCIMAGE_BPFTOOL}" gen skeleton "${_obj}" name "${_stem}_bpf" > "${_skel}"
    DEPENDS "${_obj}"
    COMMENT "skeleton ${_stem}.skel.h"
    VERBATIM)
  add_custom_target(${target}_gen DEPENDS "${_skel}")
  add_library(${target} INTERFACE)
  add_dependencies(${target} ${target}_gen)
  target_include_directories(${target} INTERFACE "${_out}")
endfunction()

# procimage_record_schema(<target> <records.json>)
# The probe's record schema (docs/plugin-abi.md, "Record schema") compiled into the plugin:
# defines PROCIMAGE_RECORD_SCHEMA (a string) in <target>_record_schema.h, on the include path
# of <target>, for PROCIMAGE_DEFINE_PROBE_WITH_SCHEMA. Editing the JSON file re-runs CMake.
function(procimage_record_schema target json)
  get_filename_component(_abs "${json}" ABSOLUTE)
  file(READ "${_abs}" _text)
  string(FIND "${_text}" ")pi_schema\"" _bad)
  if(NOT _bad EQUAL -1)
    message(FATAL_ERROR "${json}: the text may not contain ')pi_schema\"'")
  endif()
  set(_dir "${CMAKE_CURRENT_BINARY_DIR}/${target}_schema")
  file(CONFIGURE OUTPUT "${_dir}/${target}_record_schema.h" CONTENT
"// Generated from ${_abs}; do not edit.
#pragma once
static const char PROCIMAGE_RECORD_SCHEMA[] = R\"pi_schema(@_text@)pi_schema\";
" @ONLY)
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${_abs}")
  target_include_directories(${target} PRIVATE "${_dir}")
endfunction()
