#pragma once

// TLS for Parley's own protocol, on OpenSSL 3 memory BIOs: the connection
// actors move ciphertext between sockets and a tls_stream; nothing here
// touches a socket or an actor (caf::openssl only secures CAF-to-CAF links).
//
// Thread-safety: a tls_context is immutable after creation and shared by
// all connections of a role (creating one is expensive). A tls_stream is
// used by one actor at a time.

#include "ticket_keys.hpp"

#include <parley/status.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;
typedef struct bio_st BIO;
typedef struct ssl_session_st SSL_SESSION;

namespace parley::tls {

/// Bytes on their way to or from the network.
using bytes = std::vector<uint8_t>;

/// A certificate and key, generated or loaded.
struct identity {
  std::string cert_pem;
  std::string key_pem;
};

/// Generates a self-signed ECDSA P-256 certificate for `common_name` (and
/// subjectAltNames localhost, 127.0.0.1, ::1), valid for `days`.
result<identity> generate_self_signed(const std::string& common_name,
                                      int days = 3650);

/// Loads the certificate at `cert_file` and returns its SHA-256 fingerprint
/// as colon-separated upper-case hex ("AB:CD:...").
result<std::string> fingerprint_of_file(const std::string& cert_file);

/// SHA-256 fingerprint of a PEM certificate.
result<std::string> fingerprint_of_pem(const std::string& cert_pem);

/// Normalises a fingerprint for comparison: upper-case hex without colons.
std::string normalize_fingerprint(std::string_view fp);

/// TLS version floor.
enum class min_version { tls1_3, tls1_2 };

/// Options of a client context.
struct client_options {
  /// PEM file of trusted CAs (or the server's self-signed certificate).
  std::string ca_file;
  /// SHA-256 fingerprint of the server certificate to pin instead of a CA.
  std::string pinned_fingerprint;
  /// Verify the peer (default). Turning it off is for tests and is loud.
  bool verify = true;
  min_version min = min_version::tls1_3;
};

/// An SSL_CTX with Parley's settings: TLS 1.3 by default, no weak ciphers,
/// SSL_MODE_RELEASE_BUFFERS (idle connections hold ~16 KiB instead of ~48).
class context {
 public:
  /// Server context from PEM files. With `tickets`, the server sends a
  /// client one session ticket per handshake, sealed with those keys and
  /// valid for their lifetime, so that it can resume the session when it
  /// reconnects, even to a restarted server (ticket_keys.hpp); without,
  /// no tickets and no resumption.
  static result<std::shared_ptr<context>>
  server(const std::string& cert_file, const std::string& key_file,
         min_version min = min_version::tls1_3,
         std::shared_ptr<ticket_keys> tickets = nullptr);

  /// Client context.
  static result<std::shared_ptr<context>> client(const client_options& opts);

  ~context();
  context(const context&) = delete;
  context& operator=(const context&) = delete;

  SSL_CTX* native() const noexcept { return ctx_; }
  bool is_server() const noexcept { return server_; }

  /// Pinned fingerprint (normalised), empty when none.
  const std::string& pinned() const noexcept { return pinned_; }

 private:
  context(SSL_CTX* ctx, bool server) : ctx_(ctx), server_(server) {
    // nop
  }
  SSL_CTX* ctx_;
  bool server_;
  std::string pinned_;
  std::shared_ptr<ticket_keys> tickets_; // used by ctx_'s ticket callback
};

/// A TLS 1.3 session ticket a client got from a server: presented at the
/// next connection (stream::resume), it lets the handshake skip the
/// certificate exchange. Shared by the streams of one client; OpenSSL marks
/// it used up itself (a fatal alert on a connection that resumed it).
class ticket;

/// One TLS connection over memory BIOs.
///
///   tls::stream s{ctx};
///   s.receive(data, n, plaintext, to_network);   // from the socket
///   s.send(frames, to_network);                  // to the socket
///
/// Plaintext given to send() before the handshake finishes is queued.
class stream {
 public:
  /// REQUIRES: `ctx` outlives nothing: the stream keeps it alive.
  /// `sni` is the server name a client sends (may be empty).
  explicit stream(std::shared_ptr<context> ctx, const std::string& sni = {});
  ~stream();
  stream(const stream&) = delete;
  stream& operator=(const stream&) = delete;

  /// Client, before start(): offers `t` (from an earlier connection to the
  /// same server through the same context) for resumption. The server may
  /// refuse it (it restarted, the ticket expired): the handshake is then a
  /// full one, with the certificate verified as usual. A resumed handshake
  /// still makes a fresh key exchange (psk_dhe_ke: forward secrecy), and
  /// peer_fingerprint() still names the certificate verified the first time.
  void resume(std::shared_ptr<const ticket> t);

  /// Client: the newest ticket the server sent on this connection (it sends
  /// one after each handshake), or null.
  std::shared_ptr<const ticket> latest_ticket() const { return ticket_; }

  /// True once a handshake finished by resuming a ticket.
  bool resumed() const noexcept;

  /// Starts the handshake (a client's ClientHello goes to `to_network`).
  status start(bytes& to_network);

  /// Consumes ciphertext; appends decrypted bytes to `plaintext` and bytes
  /// to send back (handshake, alerts, queued writes) to `to_network`.
  /// Fails with unauthenticated for a certificate that does not verify or
  /// match the pin, unavailable once the peer closed TLS cleanly
  /// (close_notify), protocol_error for anything else; the connection is
  /// then unusable.
  status receive(const uint8_t* data, size_t n, bytes& plaintext,
                 bytes& to_network);

  /// Encrypts `n` bytes into `to_network` (queues them before the handshake).
  status send(const uint8_t* data, size_t n, bytes& to_network);

  /// Sends a close_notify alert.
  void shutdown(bytes& to_network);

  /// Gives back what the memory BIOs grew to hold (the handshake, a burst):
  /// they keep their largest size otherwise. Does nothing unless both are
  /// empty; for idle connections (10,000 users each keep ~1.3 KiB less).
  void release_buffers();

  /// True once the handshake finished.
  bool established() const noexcept { return established_; }

  /// Negotiated protocol ("TLSv1.3"), empty before the handshake.
  std::string version() const;

  /// Negotiated cipher suite, its IANA name ("TLS_AES_128_GCM_SHA256"),
  /// empty before the handshake.
  std::string cipher() const;

  /// SHA-256 fingerprint of the peer certificate, empty when none.
  std::string peer_fingerprint() const;

 private:
  status drive(bytes& plaintext, bytes& to_network);
  void drain(bytes& to_network);
  status fail(const char* what);

  std::shared_ptr<context> ctx_;
  SSL* ssl_ = nullptr;
  BIO* in_ = nullptr;  // network -> SSL
  BIO* out_ = nullptr; // SSL -> network
  bool established_ = false;
  bool failed_ = false;
  bool peer_closed_ = false; // failed_ by the peer's close_notify
  bytes pending_; // plaintext queued before the handshake
  std::shared_ptr<const ticket> ticket_; // the newest from the server

  friend int on_new_session(SSL* ssl, SSL_SESSION* sess);
};

} // namespace parley::tls
