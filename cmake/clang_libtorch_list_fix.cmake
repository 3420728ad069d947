# Clang in C++20 mode cannot parse LibTorch 1.13's headers (Debian 12's libtorch-dev):
# ATen/core/List.h defines ListImpl's constructor and ptr_to_first_element inline while IValue is
# still incomplete, and Clang instantiates std::vector<IValue>'s (C++20 constexpr) members there
# ("arithmetic on a pointer to an incomplete type 'c10::IValue'"; pytorch/pytorch#97689, GCC
# defers them). PyTorch 2 moved both out of line. For such a LibTorch, this build reads patched
# copies of List.h and ivalue_inl.h, generated here: the two definitions move, unchanged, to the
# end of ivalue_inl.h, where IValue is complete. Build tree only; installed headers are untouched.
function(clprompt_fix_libtorch_list_for_clang)
  find_file(_list_header ATen/core/List.h PATHS ${TORCH_INCLUDE_DIRS} NO_CACHE)
  find_file(_ivalue_inl ATen/core/ivalue_inl.h PATHS ${TORCH_INCLUDE_DIRS} NO_CACHE)
  if(NOT _list_header OR NOT _ivalue_inl)
    return()
  endif()
  file(READ ${_list_header} list_text)
  set(inline_constructor "  explicit ListImpl(list_type list_, TypePtr elementType_)\n  : list(std::move(list_))\n  , elementType(std::move(elementType_)) {}\n")
  set(inline_first_element "inline const IValue* ptr_to_first_element(const GenericList& list) {\n  return &list.impl_->list[0];\n}\n")
  string(FIND "${list_text}" "${inline_constructor}" at_constructor)
  string(FIND "${list_text}" "${inline_first_element}" at_first_element)
  if(at_constructor EQUAL -1 OR at_first_element EQUAL -1)
    return()  # a LibTorch without the problem (or changed otherwise): its own headers
  endif()
  string(REPLACE "${inline_constructor}" "  explicit ListImpl(list_type list_, TypePtr elementType_);\n" list_text "${list_text}")
  string(REPLACE "${inline_first_element}" "inline const IValue* ptr_to_first_element(const GenericList& list);\n" list_text "${list_text}")
  file(READ ${_ivalue_inl} ivalue_text)
  string(APPEND ivalue_text "
// clprompt (cmake/clang_libtorch_list_fix.cmake): List.h's definitions, where IValue is complete.
namespace c10 {
inline detail::ListImpl::ListImpl(list_type list_, TypePtr elementType_)
    : list(std::move(list_)), elementType(std::move(elementType_)) {}
inline const IValue* impl::ptr_to_first_element(const GenericList& list) { return &list.impl_->list[0]; }
}  // namespace c10
")
  set(fixed ${CMAKE_BINARY_DIR}/clang-libtorch-fix)
  # Rewritten only when the text changes: a new timestamp would rebuild everything at each configure.
  file(WRITE ${fixed}/List.h.new "${list_text}")
  file(WRITE ${fixed}/ivalue_inl.h.new "${ivalue_text}")
  configure_file(${fixed}/List.h.new ${fixed}/ATen/core/List.h COPYONLY)
  configure_file(${fixed}/ivalue_inl.h.new ${fixed}/ATen/core/ivalue_inl.h COPYONLY)
  # Before every other directory, for every target of this build.
  include_directories(BEFORE SYSTEM ${fixed})
  message(STATUS "Clang: LibTorch's ATen/core/List.h patched for C++20 in ${fixed}")
endfunction()
