#pragma once

// Where a user's journal records live (server_store.cpp, "the journal"):
// segments of (gen, first seq), in the user's state row.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace parley::store {

/// A user's records in journal gen `gen` begin at seq `first` (and end
/// where the next segment begins).
struct segment {
  uint64_t gen = 0;
  uint64_t first = 0;
};

/// A user's segments, in a vector's interface. A healthy store holds at
/// most two epochs' worth per user (the one filling and the one being
/// moved): up to `Inline` are kept in place, so that copying a user's
/// state, which every append and ack does, allocates nothing. A longer
/// list (a row read from disk may be any length) moves to the heap.
template<size_t Inline>
class segment_list {
 public:
  segment_list() = default;
  segment_list(const segment_list& o) { *this = o; }
  segment_list& operator=(const segment_list& o) {
    if (this == &o)
      return *this;
    heap_ = o.heap_;
    if (heap_) {
      vec_ = o.vec_;
    } else {
      vec_.clear();
      n_ = o.n_;
      std::copy(o.inl_, o.inl_ + o.n_, inl_);
    }
    return *this;
  }

  size_t size() const { return heap_ ? vec_.size() : n_; }
  bool empty() const { return size() == 0; }
  /// True once the list outgrew its inline room.
  bool on_heap() const { return heap_; }
  segment* begin() { return heap_ ? vec_.data() : inl_; }
  segment* end() { return begin() + size(); }
  const segment* begin() const { return heap_ ? vec_.data() : inl_; }
  const segment* end() const { return begin() + size(); }
  segment& operator[](size_t i) { return begin()[i]; }
  const segment& operator[](size_t i) const { return begin()[i]; }
  /// REQUIRES: !empty().
  segment& back() { return end()[-1]; }
  const segment& back() const { return end()[-1]; }

  void push_back(const segment& s) {
    if (!heap_ && n_ == Inline) {
      vec_.assign(inl_, inl_ + n_);
      heap_ = true;
    }
    if (heap_)
      vec_.push_back(s);
    else
      inl_[n_++] = s;
  }

  /// Removes [begin(), keep). REQUIRES: keep in [begin(), end()].
  void erase_front(const segment* keep) {
    auto k = static_cast<size_t>(keep - begin());
    if (heap_) {
      vec_.erase(vec_.begin(), vec_.begin() + static_cast<ptrdiff_t>(k));
    } else {
      std::copy(inl_ + k, inl_ + n_, inl_);
      n_ -= k;
    }
  }

 private:
  segment inl_[Inline];
  size_t n_ = 0; ///< Used in inl_ (when !heap_).
  bool heap_ = false;
  std::vector<segment> vec_; ///< The segments, when heap_.
};

} // namespace parley::store
