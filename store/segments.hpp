#pragma once

// Where a user's journal records live (server_store.cpp, "the journal"):
// segments of (gen, first seq), in the user's state row.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
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

// -- the state row (table `state`)

/// Appends `v` as an unsigned LEB128 varint (1 byte below 128, at most 10).
inline void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

/// Reads a varint at `at`, advancing it. False when `v` ends inside one, or
/// it is longer than 10 bytes or holds more than 64 bits.
inline bool get_varint(std::string_view v, size_t& at, uint64_t& out) {
  uint64_t r = 0;
  for (unsigned shift = 0; shift < 64 && at < v.size(); shift += 7) {
    auto b = static_cast<unsigned char>(v[at++]);
    if (shift == 63 && b > 1)
      return false; // bits beyond the 64th
    r |= uint64_t{b & 0x7fu} << shift;
    if ((b & 0x80) == 0) {
      out = r;
      return true;
    }
  }
  return false;
}

/// A user's state row since format 4: varint head, varint delivered_upto,
/// then per segment a varint gen and a varint first seq, each but the first
/// segment's as the difference from the previous segment's (mod 2^64, so
/// any list round-trips). A store's lists ascend in both, with gens one or a
/// few apart: a segment takes about 2 bytes instead of format 3's 16. Every
/// batch rewrites the rows of the users it touches, so the table's size is
/// pages written per commit: in the 1,000-user chat it fell from 56 leaves
/// to 16 (BENCHMARKS.md, session 9).
template<class List>
void encode_state_row(std::string& out, uint64_t head, uint64_t delivered_upto,
                      const List& segs) {
  out.clear();
  put_varint(out, head);
  put_varint(out, delivered_upto);
  segment prev;
  for (auto& s : segs) {
    put_varint(out, s.gen - prev.gen);
    put_varint(out, s.first - prev.first);
    prev = s;
  }
}

/// Reads a row written by encode_state_row into `segs` (appended to; the
/// caller passes an empty list). False when the row is malformed.
template<class List>
bool decode_state_row(std::string_view v, uint64_t& head,
                      uint64_t& delivered_upto, List& segs) {
  size_t at = 0;
  if (!get_varint(v, at, head) || !get_varint(v, at, delivered_upto))
    return false;
  segment prev;
  while (at < v.size()) {
    uint64_t dg = 0, df = 0;
    if (!get_varint(v, at, dg) || !get_varint(v, at, df))
      return false;
    prev = segment{prev.gen + dg, prev.first + df};
    segs.push_back(prev);
  }
  return true;
}

/// Reads a row of formats 1 to 3 (u64 LE head, u64 LE delivered_upto, then
/// u64 LE gen and u64 LE first per segment; formats 1 and 2 had none), for
/// the migration to format 4. False when the length is not 16 + 16 k.
template<class List>
bool decode_state_row_v3(std::string_view v, uint64_t& head,
                         uint64_t& delivered_upto, List& segs) {
  if (v.size() < 16 || v.size() % 16 != 0)
    return false;
  auto le64 = [&](size_t at) {
    uint64_t r = 0;
    for (size_t i = 8; i-- > 0;)
      r = (r << 8) | static_cast<unsigned char>(v[at + i]);
    return r;
  };
  head = le64(0);
  delivered_upto = le64(8);
  for (size_t at = 16; at < v.size(); at += 16)
    segs.push_back(segment{le64(at), le64(at + 8)});
  return true;
}

} // namespace parley::store
