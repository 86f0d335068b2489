#pragma once

// The keys that seal a server's TLS session tickets, kept in a file so that
// a restarted parleyd still resumes the sessions of the clients that were
// connected (OpenSSL's own keys live and die with the SSL_CTX), and rotated
// so that no key seals tickets for long.
//
// A key seals new tickets for `rotate_s`; after that it only opens the
// tickets it sealed, until the last of them expired (`rotate_s +
// lifetime_s` after it was made), and is then forgotten. The ticket format
// is OpenSSL's (RFC 5077 section 4: key name, IV, AES-256-CBC, HMAC-SHA256).
//
// The file is as secret as the certificate's private key next to it (mode
// 0600): whoever reads it can open the tickets it sealed and impersonate the
// server to those clients, though not read their past traffic (a resumed
// TLS 1.3 handshake still makes a fresh ECDHE exchange). Deleting it costs
// nothing but one full handshake per client.
//
// Thread-safety: all members may be called from any thread (OpenSSL calls
// the ticket callback on whichever worker runs the handshake).

#include <parley/status.hpp>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

typedef struct ssl_ctx_st SSL_CTX;

namespace parley::tls {

class ticket_keys {
 public:
  struct options {
    /// Seconds a key seals new tickets before the next one takes over.
    int64_t rotate_s = 3600;
    /// Seconds a ticket is valid (context::server sets the same on the
    /// SSL_CTX: OpenSSL refuses older tickets itself).
    int64_t lifetime_s = 7200;
  };

  struct key {
    std::array<uint8_t, 16> name; ///< Sent in the clear inside each ticket.
    std::array<uint8_t, 32> aes;  ///< AES-256-CBC key.
    std::array<uint8_t, 32> hmac; ///< HMAC-SHA256 key.
    int64_t created = 0;          ///< Unix seconds.
  };

  /// Reads the keys in `path` when it exists, forgets those whose tickets
  /// all expired, makes a new one when the newest is due, and writes the
  /// file back (mode 0600) when anything changed; a file that others may
  /// read is made private first. An empty `path` keeps the
  /// keys in memory only. Errors: io_error (cannot read or write the file),
  /// corruption (a malformed file: the message names the line; delete the
  /// file and the server makes new keys).
  static result<std::shared_ptr<ticket_keys>> open(const std::string& path,
                                                   options o, int64_t now);

  /// The key to seal a ticket with at `now`; rotates first when due (and
  /// saves the file: a failed save goes to on_save_error, and the new key
  /// is used anyway). Throws std::runtime_error when there is no key at all
  /// (the random generator failed at every rotation since the last one).
  key sealing(int64_t now);

  /// The key named `name` when it still opens tickets at `now`.
  std::optional<key> opening(const uint8_t* name, int64_t now);

  const options& settings() const noexcept { return o_; }

  /// The keys kept, in the order made (for tests and diagnostics).
  std::vector<key> snapshot() const;

  /// Where a failed save at rotation is reported (the server logs it).
  void on_save_error(std::function<void(const status&)> f);

  /// Makes `ctx` (a server's) seal and open its tickets with these keys.
  /// REQUIRES: this outlives `ctx` (context keeps it alive).
  void install(SSL_CTX* ctx);

 private:
  ticket_keys(std::string path, options o) : path_(std::move(path)), o_(o) {}
  /// REQUIRES: mtx_ held. True when keys_ changed.
  bool maintain(int64_t now);
  /// REQUIRES: mtx_ held.
  status save() const;

  const std::string path_;
  const options o_;
  mutable std::mutex mtx_;
  std::vector<key> keys_; // in the order made; the last one seals
  std::function<void(const status&)> on_save_error_;
};

} // namespace parley::tls
