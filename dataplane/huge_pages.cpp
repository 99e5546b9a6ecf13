#include "huge_pages.hpp"

#include <linux/mempolicy.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>

namespace nplb {
namespace {

constexpr size_t kHugePage = size_t{2} << 20;
constexpr size_t kGigaPage = size_t{1} << 30;
constexpr int kHugeGigaFlag = 30 << MAP_HUGE_SHIFT;  // MAP_HUGE_1GB: log2 of the page size
std::atomic<PagePolicy> g_policy{PagePolicy::any};

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

// MADV_HUGEPAGE succeeds even when the kernel's mode is "never".
bool transparent_huge_pages_usable() {
  static const bool usable = [] {
    FILE* f = std::fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (!f) return false;
    char mode[128] = {};
    size_t n = std::fread(mode, 1, sizeof mode - 1, f);
    std::fclose(f);
    mode[n] = 0;
    return std::strstr(mode, "[never]") == nullptr;
  }();
  return usable;
}

// Prefers `node` for the pages of [at, at + len) not yet faulted in.
void prefer_node(void* at, size_t len, int node) {
  if (node < 0 || node >= 64) return;
  unsigned long mask = 1ul << node;
  // Best effort: without NUMA support in the kernel the pages land where
  // they would anyway.
  syscall(SYS_mbind, at, len, MPOL_PREFERRED, &mask, sizeof mask * 8, 0);
}

// Anonymous memory of `len` with `extra_flags`, every page faulted in now:
// by MAP_POPULATE, or, when a node is wanted, by touching it after placing
// it (hugetlb reserves its pages at mmap, so the touch cannot fail).
void* map_populated(size_t len, int extra_flags, int numa_node) {
  int populate = numa_node >= 0 ? 0 : MAP_POPULATE;
  void* at = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | extra_flags | populate, -1, 0);
  if (at == MAP_FAILED) return nullptr;
  if (numa_node >= 0) {
    prefer_node(at, len, numa_node);
    std::memset(at, 0, len);
  }
  return at;
}

}  // namespace

const char* page_backing_name(PageBacking backing) {
  switch (backing) {
    case PageBacking::hugetlb_1g: return "hugetlb-1g";
    case PageBacking::hugetlb: return "hugetlb";
    case PageBacking::transparent: return "transparent";
    case PageBacking::normal: return "normal";
  }
  return "normal";
}

void set_page_policy(PagePolicy policy) { g_policy.store(policy, std::memory_order_relaxed); }

PageRegion::PageRegion(size_t bytes, int numa_node) {
  if (bytes == 0) return;
  PagePolicy policy = g_policy.load(std::memory_order_relaxed);
  // Tables under one huge page stay on plain pages: a 2 MiB page each for
  // the small tables of tests and tiny configurations would only waste.
  bool big = bytes >= kHugePage;
  // The reserved pools, 1 GiB pages first, each for regions of at least one
  // of its pages. Rounded up to whole pages: at most a page more than the
  // table, which is the operator's to weigh when reserving them.
  struct ReservedPool {
    size_t page;
    int flags;
    PageBacking backing;
  };
  constexpr ReservedPool kReservedPools[] = {{kGigaPage, MAP_HUGETLB | kHugeGigaFlag, PageBacking::hugetlb_1g},
                                             {kHugePage, MAP_HUGETLB, PageBacking::hugetlb}};
  for (const ReservedPool& pool : kReservedPools) {
    if (bytes < pool.page || policy != PagePolicy::any) continue;
    size_t len = round_up(bytes, pool.page);
    if (void* at = map_populated(len, pool.flags, numa_node)) {
      at_ = at;
      len_ = len;
      backing_ = pool.backing;
      return;
    }
  }
  if (big && policy != PagePolicy::normal_only && transparent_huge_pages_usable()) {
    // Over-map by one huge page and trim to a 2 MiB-aligned window.
    size_t len = round_up(bytes, kHugePage);
    void* raw = mmap(nullptr, len + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw != MAP_FAILED) {
      auto base = reinterpret_cast<uintptr_t>(raw);
      uintptr_t aligned = round_up(base, kHugePage);
      if (aligned > base) munmap(raw, aligned - base);
      if (base + kHugePage > aligned) munmap(reinterpret_cast<void*>(aligned + len), base + kHugePage - aligned);
      void* at = reinterpret_cast<void*>(aligned);
      if (madvise(at, len, MADV_HUGEPAGE) == 0) {
        prefer_node(at, len, numa_node);
        std::memset(at, 0, len);  // fault every page in now, not on the packet path
        at_ = at;
        len_ = len;
        backing_ = PageBacking::transparent;
        return;
      }
      munmap(at, len);
    }
  }
  size_t len = round_up(bytes, 4096);
  void* at = map_populated(len, 0, numa_node);
  if (!at) throw std::bad_alloc();
  at_ = at;
  len_ = len;
  backing_ = PageBacking::normal;
}

PageRegion::~PageRegion() {
  if (at_) munmap(at_, len_);
}

}  // namespace nplb
