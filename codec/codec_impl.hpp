#pragma once

// Template implementation of codec.hpp: the three field visitors (sizer,
// writer, reader). Included at the end of codec.hpp only.

#include "codec/fields.hpp"

#include <optional>
#include <string>
#include <type_traits>
#include <vector>

namespace parley::codec::detail {

/// The wire is little-endian: on such hosts integers are copied as they are.
constexpr bool little_endian_host = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;

template<class T>
constexpr bool is_wire_int_v = std::is_integral_v<T> || std::is_enum_v<T>;

template<class T>
constexpr size_t wire_size_v = std::is_same_v<T, bool> ? 1 : sizeof(T);

/// Computes the body size and checks every limit.
struct sizer {
  size_t size = 0;
  errc err = errc::ok;

  template<class T>
  std::enable_if_t<is_wire_int_v<T>, bool> operator()(T&) {
    size += wire_size_v<T>;
    return true;
  }

  bool magic() {
    size += 4;
    return true;
  }

  bool str(std::string& x, size_t max) { return sized(x, max, 2); }

  bool blob(std::string& x, size_t max) { return sized(x, max, 4); }

  template<class T>
  bool opt(std::optional<T>& x) {
    size += 1;
    return !x || fields(*this, *x);
  }

  template<class T>
  bool list(std::vector<T>& xs, size_t max) {
    if (xs.size() > max) {
      err = errc::list_too_long;
      return false;
    }
    size += 2;
    for (auto& x : xs) {
      if constexpr (std::is_same_v<T, std::string>) {
        if (!str(x, max_address))
          return false;
      } else if (!fields(*this, x)) {
        return false;
      }
    }
    return true;
  }

 private:
  bool sized(std::string& x, size_t max, size_t prefix) {
    if (x.size() > max) {
      err = errc::field_too_long;
      return false;
    }
    size += prefix + x.size();
    return true;
  }
};

/// Writes fields into memory the sizer measured. Never fails.
struct writer {
  uint8_t* p;

  template<class T>
  std::enable_if_t<is_wire_int_v<T>, bool> operator()(T& x) {
    if constexpr (std::is_same_v<T, bool>) {
      *p++ = x ? 1 : 0;
    } else if constexpr (std::is_enum_v<T>) {
      put(static_cast<std::underlying_type_t<T>>(x));
    } else {
      put(x);
    }
    return true;
  }

  bool magic() {
    put(hello_magic);
    return true;
  }

  bool str(std::string& x, size_t) {
    put(static_cast<uint16_t>(x.size()));
    bytes(x);
    return true;
  }

  bool blob(std::string& x, size_t) {
    put(static_cast<uint32_t>(x.size()));
    bytes(x);
    return true;
  }

  template<class T>
  bool opt(std::optional<T>& x) {
    *p++ = x ? 1 : 0;
    return !x || fields(*this, *x);
  }

  template<class T>
  bool list(std::vector<T>& xs, size_t) {
    put(static_cast<uint16_t>(xs.size()));
    for (auto& x : xs) {
      if constexpr (std::is_same_v<T, std::string>)
        str(x, 0);
      else
        fields(*this, x);
    }
    return true;
  }

 private:
  template<class U>
  void put(U x) {
    static_assert(std::is_unsigned_v<U>);
    if constexpr (little_endian_host) {
      std::memcpy(p, &x, sizeof(U));
      p += sizeof(U);
    } else {
      for (size_t i = 0; i < sizeof(U); ++i)
        *p++ = static_cast<uint8_t>(x >> (8 * i));
    }
  }

  void bytes(const std::string& x) {
    if (!x.empty())
      std::memcpy(p, x.data(), x.size());
    p += x.size();
  }
};

/// Reads fields, checking bounds before every access.
struct reader {
  const uint8_t* p;
  const uint8_t* end;
  errc err = errc::ok;

  template<class T>
  std::enable_if_t<is_wire_int_v<T>, bool> operator()(T& x) {
    if constexpr (std::is_same_v<T, bool>) {
      uint8_t v;
      if (!get(v))
        return false;
      if (v > 1)
        return fail(errc::invalid_value);
      x = v == 1;
    } else if constexpr (std::is_enum_v<T>) {
      std::underlying_type_t<T> v;
      if (!get(v))
        return false;
      x = static_cast<T>(v);
      if (!valid(x))
        return fail(errc::invalid_value);
    } else {
      return get(x);
    }
    return true;
  }

  bool magic() {
    uint32_t v;
    if (!get(v))
      return false;
    return v == hello_magic || fail(errc::bad_magic);
  }

  bool str(std::string& x, size_t max) {
    uint16_t n;
    return get(n) && bytes(x, n, max);
  }

  bool blob(std::string& x, size_t max) {
    uint32_t n;
    return get(n) && bytes(x, n, max);
  }

  template<class T>
  bool opt(std::optional<T>& x) {
    bool present;
    if (!(*this)(present))
      return false;
    if (!present) {
      x.reset();
      return true;
    }
    if (!x)
      x.emplace();
    return fields(*this, *x);
  }

  template<class T>
  bool list(std::vector<T>& xs, size_t max) {
    uint16_t n;
    if (!get(n))
      return false;
    if (n > max)
      return fail(errc::list_too_long);
    // Every element takes at least one byte: a count beyond the remaining
    // bytes is truncation, found before allocating for it.
    if (n > static_cast<size_t>(end - p))
      return fail(errc::truncated);
    xs.resize(n);
    for (auto& x : xs) {
      if constexpr (std::is_same_v<T, std::string>) {
        if (!str(x, max_address))
          return false;
      } else if (!fields(*this, x)) {
        return false;
      }
    }
    return true;
  }

 private:
  bool fail(errc e) {
    err = e;
    return false;
  }

  template<class U>
  bool get(U& x) {
    static_assert(std::is_unsigned_v<U>);
    if (static_cast<size_t>(end - p) < sizeof(U))
      return fail(errc::truncated);
    U v = 0;
    if constexpr (little_endian_host) {
      std::memcpy(&v, p, sizeof(U));
    } else {
      for (size_t i = 0; i < sizeof(U); ++i)
        v |= static_cast<U>(static_cast<U>(p[i]) << (8 * i));
    }
    p += sizeof(U);
    x = v;
    return true;
  }

  bool bytes(std::string& x, size_t n, size_t max) {
    if (n > max)
      return fail(errc::field_too_long);
    if (static_cast<size_t>(end - p) < n)
      return fail(errc::truncated);
    x.assign(reinterpret_cast<const char*>(p), n);
    p += n;
    return true;
  }
};

} // namespace parley::codec::detail

namespace parley::codec {

template<class Frame>
size_t encoded_body_size(const Frame& f, errc& err) {
  detail::sizer s;
  // The visitors take mutable references so that one field list serves
  // reading and writing; the sizer and the writer never modify.
  if (!fields(s, const_cast<Frame&>(f))) {
    err = s.err;
    return 0;
  }
  err = errc::ok;
  return s.size;
}

template<class Frame>
errc encode(const Frame& f, buffer& out, uint32_t max_body) {
  errc err;
  auto size = encoded_body_size(f, err);
  if (err != errc::ok)
    return err;
  if (size > max_body || size > max_frame_body_protocol)
    return errc::frame_too_large;
  auto old = out.size();
  out.resize(old + header_size + size);
  auto* h = out.data() + old;
  h[0] = static_cast<uint8_t>(Frame::type);
  h[1] = static_cast<uint8_t>(size);
  h[2] = static_cast<uint8_t>(size >> 8);
  h[3] = static_cast<uint8_t>(size >> 16);
  detail::writer w{h + header_size};
  fields(w, const_cast<Frame&>(f));
  return errc::ok;
}

template<class Frame>
errc decode_body(const uint8_t* body, size_t len, Frame& out) {
  detail::reader r{body, body + len};
  if (!fields(r, out))
    return r.err;
  if (r.p != r.end)
    return errc::trailing_bytes;
  return errc::ok;
}

} // namespace parley::codec
