#pragma once

// Big-endian key encoding: LMDB compares keys as byte strings (memcmp), so an
// unsigned integer written most significant byte first sorts in numeric
// order, and a composite key (user, seq) written field by field sorts by user
// first, then by seq.
//
//   store::key_builder k;
//   k.u64(user).u64(seq);             // 16 bytes, no allocation
//   t.put(log, k.view(), body);
//
// Header-only, no LMDB. Thread-safety: functions are reentrant; a
// key_builder is used by one thread at a time.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace parley::store {

/// Writes `v` big-endian into `p[0..8)`.
inline void encode_be64(char* p, uint64_t v) noexcept {
  for (int i = 7; i >= 0; --i) {
    p[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
}

/// Writes `v` big-endian into `p[0..4)`.
inline void encode_be32(char* p, uint32_t v) noexcept {
  for (int i = 3; i >= 0; --i) {
    p[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
}

/// Reads a big-endian u64 from `p[0..8)`.
inline uint64_t get_be64(const char* p) noexcept {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i)
    v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

/// Reads a big-endian u32 from `p[0..4)`.
inline uint32_t get_be32(const char* p) noexcept {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i)
    v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

/// Appends `v` big-endian (8 bytes) to `out`.
inline void put_be64(std::string& out, uint64_t v) {
  char buf[8];
  encode_be64(buf, v);
  out.append(buf, 8);
}

/// Appends `v` big-endian (4 bytes) to `out`.
inline void put_be32(std::string& out, uint32_t v) {
  char buf[4];
  encode_be32(buf, v);
  out.append(buf, 4);
}

/// Builds a key on the stack, field by field, without allocating.
///
/// Holds at most `max_size` bytes, LMDB's default key limit
/// (mdb_env_get_maxkeysize). A builder that overflowed reports `!ok()` and its
/// view() is `max_size + 1` bytes long, which every txn and cursor call
/// refuses with invalid_argument: an overlong key is never silently
/// truncated into another key.
///
/// Variable-length fields (`bytes`) sort correctly only as the last field, or
/// when all values of that field have the same length.
class key_builder {
 public:
  /// LMDB's maximum key size (MDB_MAXKEYSIZE in Debian's build).
  static constexpr size_t max_size = 511;

  /// Appends `v` big-endian (8 bytes).
  key_builder& u64(uint64_t v) noexcept {
    if (reserve(8))
      encode_be64(buf_ + size_ - 8, v);
    return *this;
  }

  /// Appends `v` big-endian (4 bytes).
  key_builder& u32(uint32_t v) noexcept {
    if (reserve(4))
      encode_be32(buf_ + size_ - 4, v);
    return *this;
  }

  /// Appends one byte (a table tag, a kind).
  key_builder& u8(uint8_t v) noexcept {
    if (reserve(1))
      buf_[size_ - 1] = static_cast<char>(v);
    return *this;
  }

  /// Appends raw bytes.
  key_builder& bytes(std::string_view s) noexcept {
    if (reserve(s.size()) && !s.empty())
      std::memcpy(buf_ + size_ - s.size(), s.data(), s.size());
    return *this;
  }

  /// Empties the builder for reuse.
  void clear() noexcept { size_ = 0; }

  /// False after an append overflowed `max_size`.
  bool ok() const noexcept { return size_ <= max_size; }

  /// Bytes written (max_size + 1 after an overflow).
  size_t size() const noexcept { return size_; }

  /// The key. Valid while the builder lives and is not modified.
  std::string_view view() const noexcept { return {buf_, size_}; }

  /// Same as view().
  operator std::string_view() const noexcept { return view(); }

 private:
  bool reserve(size_t n) noexcept {
    if (size_ > max_size || n > max_size - size_) {
      size_ = max_size + 1;
      return false;
    }
    size_ += n;
    return true;
  }

  char buf_[max_size + 1];
  size_t size_ = 0;
};

} // namespace parley::store
