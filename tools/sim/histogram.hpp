#pragma once

// A log-linear latency histogram (HdrHistogram's idea, 32 sub-buckets per
// power of two: every recorded value is kept within 1/32 = 3.1 %). Recording
// is lock-free and may happen from any number of threads; percentiles are
// read from a snapshot. Values are nanoseconds (any unsigned unit works).

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace parley::sim {

class histogram {
 public:
  static constexpr int sub_bits = 5;
  static constexpr size_t sub_count = size_t{1} << sub_bits;
  static constexpr size_t bucket_count = (64 - sub_bits + 1) * sub_count;

  histogram() {
    for (auto& b : buckets_)
      b.store(0, std::memory_order_relaxed);
  }

  /// The bucket of `v`.
  static size_t index_of(uint64_t v) noexcept {
    if (v < sub_count)
      return static_cast<size_t>(v);
    int msb = 63 - __builtin_clzll(v); // >= sub_bits
    int shift = msb - sub_bits;        // >= 0
    uint64_t sub = (v >> shift) & (sub_count - 1);
    return static_cast<size_t>((shift + 1) * sub_count + sub);
  }

  /// The highest value that falls into bucket `i` (what percentiles report,
  /// so they never understate).
  static uint64_t upper_of(size_t i) noexcept {
    if (i < sub_count)
      return i;
    auto shift = static_cast<int>(i / sub_count) - 1;
    uint64_t sub = i % sub_count;
    uint64_t low = (sub_count + sub) << shift;
    return low + ((uint64_t{1} << shift) - 1);
  }

  void record(uint64_t v) noexcept {
    buckets_[index_of(v)].fetch_add(1, std::memory_order_relaxed);
    count_.fetch_add(1, std::memory_order_relaxed);
    auto m = max_.load(std::memory_order_relaxed);
    while (v > m &&
           !max_.compare_exchange_weak(m, v, std::memory_order_relaxed)) {
      // retry with the max another thread stored
    }
  }

  uint64_t count() const noexcept {
    return count_.load(std::memory_order_relaxed);
  }

  uint64_t max() const noexcept { return max_.load(std::memory_order_relaxed); }

  /// The value at quantile `q` (0..1): the smallest bucket bound below which
  /// at least q of the values lie (exact max for q = 1); 0 when empty.
  uint64_t quantile(double q) const noexcept {
    uint64_t n = count();
    if (n == 0)
      return 0;
    if (q >= 1.0)
      return max();
    auto rank = static_cast<uint64_t>(q * static_cast<double>(n));
    if (rank >= n)
      rank = n - 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < bucket_count; ++i) {
      seen += buckets_[i].load(std::memory_order_relaxed);
      if (seen > rank) {
        auto up = upper_of(i);
        return up < max() ? up : max();
      }
    }
    return max();
  }

  void reset() noexcept {
    for (auto& b : buckets_)
      b.store(0, std::memory_order_relaxed);
    count_.store(0, std::memory_order_relaxed);
    max_.store(0, std::memory_order_relaxed);
  }

 private:
  std::array<std::atomic<uint64_t>, bucket_count> buckets_;
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> max_{0};
};

} // namespace parley::sim
