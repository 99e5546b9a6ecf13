// Memory for the big per-worker tables (flow buckets and entries) on huge
// pages. A flow lookup is a random access into hundreds of MiB: on 4 KiB
// pages nearly every one also misses the TLB and walks the page tables
// (measured: 1M flows 176 -> 157 cycles/packet on transparent huge pages
// alone, see docs/benchmarks.md).
//
// Where the memory comes from, in order: for regions of 1 GiB or more, the
// kernel's reserved 1 GiB pool (reserve with `hugepagesz=1G hugepages=N` at
// boot, or `echo N > /sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages`;
// a 10M-connection table: 3 pages, 1200 TLB entries fewer than on 2 MiB
// pages, 10Mi 118.5 -> 112.0 cycles/packet in the bench); then the reserved
// 2 MiB pool (MAP_HUGETLB; the same pool DPDK's EAL draws from: reserve with
// `echo N > /proc/sys/vm/nr_hugepages`), then 2 MiB-aligned anonymous memory
// with MADV_HUGEPAGE (transparent huge pages, when the kernel has them in
// "madvise" or "always" mode), then plain pages. Every page is touched when
// the table is built, so the packet path never takes a page fault.
//
// Control path only: allocation uses system calls.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <utility>

namespace nplb {

enum class PageBacking : uint8_t { hugetlb_1g, hugetlb, transparent, normal };
inline bool is_reserved_pool(PageBacking backing) {
  return backing == PageBacking::hugetlb_1g || backing == PageBacking::hugetlb;
}
const char* page_backing_name(PageBacking backing);

// Which sources allocate_pages may use: all of them (the default), or not
// the reserved pool, or plain pages only (the bench compares them).
enum class PagePolicy : uint8_t { any, no_hugetlb, normal_only };
void set_page_policy(PagePolicy policy);

// Zero-filled, populated memory of at least `bytes`; freed by the deleter.
// With `numa_node` >= 0 its pages come preferably from that node (the
// worker's socket): MPOL_PREFERRED, so a node without free pages falls back
// to another instead of failing.
class PageRegion {
 public:
  PageRegion() = default;
  explicit PageRegion(size_t bytes, int numa_node = -1);
  PageRegion(PageRegion&& o) noexcept { *this = std::move(o); }
  PageRegion& operator=(PageRegion&& o) noexcept {
    std::swap(at_, o.at_);
    std::swap(len_, o.len_);
    std::swap(backing_, o.backing_);
    return *this;
  }
  ~PageRegion();
  void* data() const { return at_; }
  PageBacking backing() const { return backing_; }

 private:
  void* at_ = nullptr;
  size_t len_ = 0;
  PageBacking backing_ = PageBacking::normal;
};

// `count` default-constructed T's in a PageRegion.
template <typename T>
class PageArray {
 public:
  PageArray() = default;
  explicit PageArray(size_t count, int numa_node = -1) : region_(count * sizeof(T), numa_node), count_(count) {
    static_assert(alignof(T) <= 4096);
    T* at = static_cast<T*>(region_.data());
    for (size_t i = 0; i < count; ++i) new (&at[i]) T();
  }
  PageArray(PageArray&& o) noexcept { *this = std::move(o); }
  PageArray& operator=(PageArray&& o) noexcept {
    std::swap(region_, o.region_);
    std::swap(count_, o.count_);
    return *this;
  }
  ~PageArray() {
    T* at = data();
    for (size_t i = 0; i < count_; ++i) at[i].~T();
  }
  T* data() const { return static_cast<T*>(region_.data()); }
  T& operator[](size_t i) const { return data()[i]; }
  size_t size() const { return count_; }
  PageBacking backing() const { return region_.backing(); }

 private:
  PageRegion region_;
  size_t count_ = 0;
};

}  // namespace nplb
