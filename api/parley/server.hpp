#pragma once

// The Parley server as a library: parleyd's main is a thin wrapper over it,
// and an application can run a server inside its own process.
//
//   parley::server_options opts;
//   opts.data_dir = "/var/lib/parley";
//   auto srv = parley::server::start(opts);
//   if (!srv) { std::cerr << srv.error().to_string() << '\n'; return 1; }
//   (*srv)->wait();                 // until stop() or a signal handler stops
//   it
//
// Threading: every member function is thread-safe. Hooks are called from the
// server's worker threads, possibly concurrently: they must be thread-safe and
// should return quickly (they sit on the path of every login or message).

#include <parley/status.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace caf {
class actor_system; // only named: see <parley/interop.hpp>
} // namespace caf

namespace parley {

class server;
struct server_options;
class server_hooks;

/// Starts a server on a host's actor system (see <parley/interop.hpp>).
result<std::unique_ptr<server>>
interop_start(caf::actor_system& sys, const server_options& opts,
              std::shared_ptr<server_hooks> hooks);

/// How a server is configured. Every field has a working default.
struct server_options {
  /// Address to listen on. "0.0.0.0" or "::" to serve other hosts.
  std::string host = "127.0.0.1";
  /// TCP port; 0 lets the system pick one (see server::port()).
  uint16_t port = 5290;
  /// Data directory: the LMDB store, the admin key, a generated certificate.
  std::string data_dir = "parley-data";
  /// PEM certificate chain and key. Empty: a self-signed ECDSA P-256
  /// certificate is generated into data_dir on first start.
  std::string cert_file;
  std::string key_file;
  /// Accept TLS 1.2 clients too (TLS 1.3 only by default).
  bool allow_tls12 = false;
  /// Seconds a TLS session ticket stays valid: a client that reconnects
  /// within it resumes its session, with about half the handshake's CPU on
  /// both sides. The keys that seal the tickets are kept in
  /// data_dir/ticket.keys (mode 0600) and rotated every lifetime / 2, so
  /// reconnects after a restart resume too. 0: no tickets, no resumption
  /// (and no key file).
  uint32_t tls_ticket_lifetime_s = 7200;
  /// Durable commits (fsync per batch). false only for benchmarks: a crash
  /// can lose messages that were acknowledged as SENT.
  bool sync = true;
  /// Log retention and the default token lifetime, in seconds.
  uint32_t retention_s = 30 * 24 * 3600;
  uint32_t token_ttl_s = 365 * 24 * 3600;
  /// How long after sending a user may retract (delete for everyone) a
  /// message, seconds. Edits have no window.
  uint32_t retract_window_s = 3600;
  /// Unacknowledged log records per user before INBOXFULL.
  uint64_t inbox_quota = 100000;
  /// Largest frame body accepted, bytes.
  uint32_t max_frame = 1u << 20;
  /// Log records in flight per device before the server waits for acks.
  /// Memory is bounded by max_write_buffer, not by this: the window only
  /// keeps a drain from waiting for acks. A device draining 100,000 queued
  /// messages got 520-530k/s with 512, 630k with 1024 and 720-760k with
  /// 4096 (BENCHMARKS.md, session 12).
  uint32_t window = 4096;
  /// Bytes queued for one connection before the server stops streaming to
  /// it (a slow receiver costs disk, not memory).
  uint32_t max_write_buffer = 1u << 20;
  /// Clients ping this often; a connection silent for idle_timeout_s closes.
  uint32_t ping_interval_s = 30;
  uint32_t idle_timeout_s = 90;
  /// A connection must finish TLS and log in within this time.
  uint32_t login_timeout_s = 10;
  /// Frames one connection may send per second, with a second's worth saved
  /// up. A message sent over the rate is refused with RATELIMITED (not
  /// stored; send it again later); a connection that keeps sending another
  /// second's worth regardless is closed with goodbye(rate_limited).
  /// 0 = no limit.
  uint32_t max_frames_per_s = 50000;
  /// Failed logins (user or admin) allowed per minute from one IP address,
  /// with a minute's worth saved up; beyond them every login from that
  /// address is refused with rate_limited until the minute has passed, so
  /// tokens and the admin key cannot be guessed by brute force. 0 = no limit.
  uint32_t login_failures_per_min = 30;
  /// Initial and largest LMDB map size, bytes.
  uint64_t map_size = 1ull << 30;
  uint64_t max_map_size = 1ull << 40;
  /// Worker threads of the actor system; 0 = the number of cores, at least 2.
  uint32_t threads = 0;
  /// Log level: trace, debug, info, warn, error, off.
  std::string log_level = "info";
  /// Server time in ms since the Unix epoch; empty = the system clock. The
  /// server time-stamps messages and decides expiry with it; tests move time
  /// forward with it. Called from several threads: must be thread-safe.
  std::function<uint64_t()> clock;
};

/// What a login hook sees.
struct login_event {
  std::string app_id;
  std::string address;
  std::string device;
};

/// What a message hook sees.
struct message_event {
  std::string app_id;
  std::string from;
  std::string to;        ///< Empty for a group message.
  uint32_t group_id = 0; ///< 0 for 1:1.
  uint64_t mid = 0;
  uint16_t kind = 0;
  const std::string* payload = nullptr; ///< Valid during the call only.
};

/// A hook's decision.
struct verdict {
  bool accept = true;
  std::string reason; ///< Shown to the refused client.
  static verdict ok() { return {}; }
  static verdict reject(std::string why) { return {false, std::move(why)}; }
};

/// Application hooks (Mesibo's on-premise on_login / on_message).
class server_hooks {
 public:
  virtual ~server_hooks() = default;
  /// Called after the token checked out; a rejection fails the login.
  virtual verdict on_login(const login_event&) { return verdict::ok(); }
  /// Called before a message is stored; a rejection fails it at the sender
  /// with status REJECTED and the reason.
  virtual verdict on_message(const message_event&) { return verdict::ok(); }
};

/// A token issued by the in-process admin calls.
struct access_token {
  std::string app_id;
  std::string address;
  std::string token;
  uint64_t expires_at_ms = 0;
};

/// A running server.
class server {
 public:
  /// Opens the data directory, loads or generates the certificate and the
  /// admin key, binds the port and starts serving. Fails with a status that
  /// says what to fix (port in use, unreadable certificate, newer data
  /// format...).
  static result<std::unique_ptr<server>>
  start(const server_options& opts,
        std::shared_ptr<server_hooks> hooks = nullptr);

  /// Stops the server (as stop()) and waits for it.
  ~server();

  server(const server&) = delete;
  server& operator=(const server&) = delete;

  /// The port actually bound.
  uint16_t port() const;

  /// SHA-256 fingerprint of the server certificate ("AB:CD:...").
  const std::string& fingerprint() const;

  /// Path of the certificate in use (clients may trust it as their CA file).
  const std::string& cert_file() const;

  /// The admin key (also in <data_dir>/admin.key, mode 0600).
  const std::string& admin_key() const;

  /// Graceful stop: stops accepting, tells clients SHUTDOWN, flushes the
  /// store. Returns at once; wait() blocks until done. Idempotent.
  void stop();

  /// Blocks until the server stopped.
  void wait();

  /// Number of logged-in device sessions.
  uint64_t sessions() const;

  // -- in-process admin (the same operations as the admin frames)
  // -----------------

  /// Creates an app.
  status app_add(const std::string& app_id, const std::string& name = {});

  /// Creates a user if missing and issues a token (ttl 0 = default).
  result<access_token> user_add(const std::string& app_id,
                                const std::string& address,
                                const std::string& name = {},
                                uint32_t token_ttl_s = 0);

  /// user_add for many users at once, a thousand per transaction (as
  /// admin_client::users_add).
  result<std::vector<access_token>>
  users_add(const std::string& app_id,
            const std::vector<std::string>& addresses,
            uint32_t token_ttl_s = 0);

  /// Revokes one token, or all of the user's when `token` is empty; their
  /// live sessions end at once.
  status token_revoke(const std::string& app_id, const std::string& address,
                      const std::string& token = {});

  /// Disables (or enables) a user; disabling ends its sessions.
  status user_disable(const std::string& app_id, const std::string& address,
                      bool disabled = true);

  struct impl;

 private:
  friend result<std::unique_ptr<server>>
  interop_start(caf::actor_system&, const server_options&,
                std::shared_ptr<server_hooks>);

  static result<std::unique_ptr<server>>
  start_on(caf::actor_system* host, const server_options& opts,
           std::shared_ptr<server_hooks> hooks);

  explicit server(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

} // namespace parley
