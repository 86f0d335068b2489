#pragma once

// The one status type shared by codec/, store/ and api/ (LevelDB's Status is
// the model): a code plus a human-readable message that says what went wrong
// and what to do. An OK status holds no allocation and costs one pointer.
//
// This header depends on nothing but the standard library, so the pure layers
// (codec/, store/) and the public API can all include it.

#include <cstdint>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace parley {

/// Broad classes of failure. Stable numbers: they travel in `server_error`
/// frames and are part of the wire protocol (docs/PROTOCOL.md).
enum class status_code : uint8_t {
  ok = 0,
  invalid_argument = 1,     ///< The caller passed something malformed.
  not_found = 2,            ///< The named thing does not exist.
  already_exists = 3,       ///< The named thing exists already.
  corruption = 4,           ///< Stored or received data is inconsistent.
  io_error = 5,             ///< The operating system refused an operation.
  permission_denied = 6,    ///< Authenticated, but not allowed to do this.
  unauthenticated = 7,      ///< Credentials missing, wrong, expired or revoked.
  resource_exhausted = 8,   ///< A quota, a limit or the disk is full.
  unavailable = 9,          ///< Not reachable now; trying again may work.
  failed_precondition = 10, ///< The state does not allow it (not started...).
  protocol_error = 11,      ///< A peer broke the wire protocol.
  version_mismatch = 12,    ///< A format or protocol version is not supported.
  timeout = 13,             ///< A deadline passed.
  cancelled = 14,           ///< The operation was stopped before it finished.
  internal = 15,            ///< A bug in Parley: please report it.
};

/// Returns the lower-case name of `code`, e.g. "invalid_argument".
constexpr std::string_view to_string(status_code code) noexcept {
  switch (code) {
  case status_code::ok:
    return "ok";
  case status_code::invalid_argument:
    return "invalid_argument";
  case status_code::not_found:
    return "not_found";
  case status_code::already_exists:
    return "already_exists";
  case status_code::corruption:
    return "corruption";
  case status_code::io_error:
    return "io_error";
  case status_code::permission_denied:
    return "permission_denied";
  case status_code::unauthenticated:
    return "unauthenticated";
  case status_code::resource_exhausted:
    return "resource_exhausted";
  case status_code::unavailable:
    return "unavailable";
  case status_code::failed_precondition:
    return "failed_precondition";
  case status_code::protocol_error:
    return "protocol_error";
  case status_code::version_mismatch:
    return "version_mismatch";
  case status_code::timeout:
    return "timeout";
  case status_code::cancelled:
    return "cancelled";
  case status_code::internal:
    return "internal";
  }
  return "unknown";
}

/// The outcome of an operation: OK, or a code with a message.
///
/// Thread-safety: a status is a value; distinct objects may be used from
/// distinct threads, one object needs external synchronisation.
class status {
 public:
  /// Constructs OK.
  status() noexcept = default;

  /// Constructs a failure. REQUIRES: `code != status_code::ok`.
  status(status_code code, std::string message)
    : rep_(std::make_unique<rep>(rep{code, std::move(message)})) {
    // nop
  }

  status(const status& other)
    : rep_(other.rep_ ? std::make_unique<rep>(*other.rep_) : nullptr) {
    // nop
  }

  status& operator=(const status& other) {
    if (this != &other)
      rep_ = other.rep_ ? std::make_unique<rep>(*other.rep_) : nullptr;
    return *this;
  }

  status(status&&) noexcept = default;
  status& operator=(status&&) noexcept = default;

  /// Returns OK.
  static status ok_status() noexcept { return status{}; }

  /// True when the operation succeeded.
  bool ok() const noexcept { return rep_ == nullptr; }

  /// Same as `ok()`.
  explicit operator bool() const noexcept { return ok(); }

  /// The code; `status_code::ok` for OK.
  status_code code() const noexcept {
    return rep_ ? rep_->code : status_code::ok;
  }

  /// The message; empty for OK.
  const std::string& message() const noexcept {
    static const std::string empty;
    return rep_ ? rep_->message : empty;
  }

  /// "ok", or "<code>: <message>".
  std::string to_string() const {
    if (ok())
      return "ok";
    std::string out{parley::to_string(rep_->code)};
    out += ": ";
    out += rep_->message;
    return out;
  }

  /// Returns a copy whose message is `prefix + ": " + message()`. OK stays OK.
  status annotate(std::string_view prefix) const {
    if (ok())
      return status{};
    std::string msg{prefix};
    msg += ": ";
    msg += rep_->message;
    return status{rep_->code, std::move(msg)};
  }

 private:
  struct rep {
    status_code code;
    std::string message;
  };
  std::unique_ptr<rep> rep_;
};

/// Either a `T` or a failed status (std::expected's role, in C++17).
template<class T>
class result {
 public:
  static_assert(!std::is_same_v<T, status>, "use status directly");

  /// Holds a value.
  result(T value) : ok_(true) { new (&value_) T(std::move(value)); }

  /// Holds an error. REQUIRES: `!err.ok()`.
  result(status err) : ok_(false) {
    if (err.ok())
      err = status{status_code::internal, "result<T> built from an OK status"};
    new (&error_) status(std::move(err));
  }

  result(const result& other) : ok_(other.ok_) {
    if (ok_)
      new (&value_) T(other.value_);
    else
      new (&error_) status(other.error_);
  }

  result(result&& other) noexcept(std::is_nothrow_move_constructible_v<T>)
    : ok_(other.ok_) {
    if (ok_)
      new (&value_) T(std::move(other.value_));
    else
      new (&error_) status(std::move(other.error_));
  }

  result& operator=(result other) {
    destroy();
    ok_ = other.ok_;
    if (ok_)
      new (&value_) T(std::move(other.value_));
    else
      new (&error_) status(std::move(other.error_));
    return *this;
  }

  ~result() { destroy(); }

  /// True when a value is held.
  bool ok() const noexcept { return ok_; }
  explicit operator bool() const noexcept { return ok_; }

  /// The value. REQUIRES: `ok()`.
  T& value() & { return value_; }
  const T& value() const& { return value_; }
  T&& value() && { return std::move(value_); }
  T& operator*() & { return value_; }
  const T& operator*() const& { return value_; }
  T* operator->() { return &value_; }
  const T* operator->() const { return &value_; }

  /// The error, or OK when a value is held.
  status error() const { return ok_ ? status{} : error_; }

  /// The error by reference. REQUIRES: `!ok()`.
  const status& error_ref() const { return error_; }

 private:
  void destroy() noexcept {
    if (ok_)
      value_.~T();
    else
      error_.~status();
  }

  bool ok_;
  union {
    T value_;
    status error_;
  };
};

} // namespace parley
