// Host memory for the large per-vertex arrays (rows of values, coordinates).
//
// std::vector<T>(n) and resize(n) value-initialise: a fresh multi-gigabyte array of rows
// is written with zeros, page by page (each first touch a page fault), and then written
// again with the values. HostAllocator leaves trivial values uninitialised, so the
// values are the first and only write. (Transparent huge pages were tried for these
// blocks: under "defrag=madvise" the kernel's compaction at fault time made refinements
// slower and their time erratic, so the blocks use the default pages.)
#pragma once

#include <cstddef>
#include <cstdlib>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

namespace splinecam {

// Uninitialised storage of `bytes` (at least one byte).
inline void* host_allocate(std::size_t bytes) {
  void* p = std::malloc(bytes > 0 ? bytes : 1);
  if (!p) throw std::bad_alloc();
  return p;
}

inline void host_free(void* p) noexcept { std::free(p); }

// std::allocator without value-initialisation: resize(n) leaves trivial values unset.
template <class T>
struct HostAllocator {
  using value_type = T;
  HostAllocator() noexcept = default;
  template <class U>
  HostAllocator(const HostAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(host_allocate(n * sizeof(T))); }
  void deallocate(T* p, std::size_t) noexcept { host_free(p); }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    if constexpr (sizeof...(Args) == 0 && std::is_trivially_default_constructible_v<U>)
      ::new (static_cast<void*>(p)) U;  // default-initialised: no zero fill
    else
      ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
  template <class U>
  bool operator==(const HostAllocator<U>&) const noexcept { return true; }
  template <class U>
  bool operator!=(const HostAllocator<U>&) const noexcept { return false; }
};

// A vector whose resize does not fill: write every element before reading it.
template <class T>
using HostVector = std::vector<T, HostAllocator<T>>;

}  // namespace splinecam
