#include "actors/tls/tls.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>

#include <cctype>
#include <cstdio>
#include <new>

namespace parley::tls {

namespace {

std::string openssl_errors() {
  std::string out;
  unsigned long e;
  char buf[256];
  while ((e = ERR_get_error()) != 0) {
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!out.empty())
      out += "; ";
    out += buf;
  }
  return out.empty() ? std::string{"no OpenSSL error queued"} : out;
}

status ssl_error(status_code code, std::string what) {
  what += ": ";
  what += openssl_errors();
  return status{code, std::move(what)};
}

template<class T, void (*Free)(T*)>
struct deleter {
  void operator()(T* p) const noexcept { Free(p); }
};

using pkey_ptr = std::unique_ptr<EVP_PKEY, deleter<EVP_PKEY, EVP_PKEY_free>>;
using x509_ptr = std::unique_ptr<X509, deleter<X509, X509_free>>;
using bio_ptr = std::unique_ptr<BIO, deleter<BIO, BIO_free_all>>;

std::string bio_to_string(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(len));
}

std::string fingerprint(X509* cert) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (X509_digest(cert, EVP_sha256(), md, &len) != 1)
    return {};
  std::string out;
  char hex[4];
  for (unsigned int i = 0; i < len; ++i) {
    std::snprintf(hex, sizeof(hex), i + 1 < len ? "%02X:" : "%02X", md[i]);
    out += hex;
  }
  return out;
}

bool add_ext(X509* cert, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (ext == nullptr)
    return false;
  int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  return ok == 1;
}

bool is_ip_literal(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 ||
         inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

int accept_any(int, X509_STORE_CTX*) {
  return 1; // pinning: the fingerprint is checked after the handshake
}

} // namespace

result<identity> generate_self_signed(const std::string& common_name,
                                      int days) {
  ERR_clear_error();
  pkey_ptr key{EVP_EC_gen("P-256")};
  if (!key)
    return ssl_error(status_code::internal, "generating a P-256 key");
  x509_ptr cert{X509_new()};
  if (!cert)
    return ssl_error(status_code::internal, "allocating a certificate");
  X509_set_version(cert.get(), 2);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof(serial));
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof(serial), nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 86400L * days);
  X509_set_pubkey(cert.get(), key.get());
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(
    name, "CN", MBSTRING_UTF8,
    reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>("Parley"),
                             -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  std::string san = "DNS:localhost,IP:127.0.0.1,IP:::1";
  if (!common_name.empty() && common_name != "localhost")
    san += (is_ip_literal(common_name) ? ",IP:" : ",DNS:") + common_name;
  if (!add_ext(cert.get(), NID_basic_constraints, "critical,CA:TRUE") ||
      !add_ext(cert.get(), NID_key_usage,
               "critical,digitalSignature,keyCertSign") ||
      !add_ext(cert.get(), NID_ext_key_usage, "serverAuth") ||
      !add_ext(cert.get(), NID_subject_alt_name, san.c_str()))
    return ssl_error(status_code::internal, "adding certificate extensions");
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0)
    return ssl_error(status_code::internal, "signing the certificate");
  bio_ptr cert_bio{BIO_new(BIO_s_mem())};
  bio_ptr key_bio{BIO_new(BIO_s_mem())};
  if (PEM_write_bio_X509(cert_bio.get(), cert.get()) != 1 ||
      PEM_write_bio_PrivateKey(key_bio.get(), key.get(), nullptr, nullptr, 0,
                               nullptr, nullptr) != 1)
    return ssl_error(status_code::internal, "writing PEM");
  return identity{bio_to_string(cert_bio.get()), bio_to_string(key_bio.get())};
}

result<std::string> fingerprint_of_pem(const std::string& cert_pem) {
  ERR_clear_error();
  bio_ptr bio{
    BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size()))};
  x509_ptr cert{PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)};
  if (!cert)
    return ssl_error(status_code::invalid_argument, "not a PEM certificate");
  return fingerprint(cert.get());
}

result<std::string> fingerprint_of_file(const std::string& cert_file) {
  ERR_clear_error();
  bio_ptr bio{BIO_new_file(cert_file.c_str(), "r")};
  if (!bio)
    return status{status_code::not_found,
                  "cannot read certificate file '" + cert_file + "'"};
  x509_ptr cert{PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)};
  if (!cert)
    return ssl_error(status_code::invalid_argument,
                     "'" + cert_file + "' holds no PEM certificate");
  return fingerprint(cert.get());
}

std::string normalize_fingerprint(std::string_view fp) {
  std::string out;
  for (char c : fp)
    if (std::isxdigit(static_cast<unsigned char>(c)))
      out += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

// -- ticket ------------------------------------------------------------------

class ticket {
 public:
  explicit ticket(SSL_SESSION* s) noexcept : session_(s) {
    // nop
  }
  ~ticket() { SSL_SESSION_free(session_); }
  ticket(const ticket&) = delete;
  ticket& operator=(const ticket&) = delete;
  SSL_SESSION* native() const noexcept { return session_; }

 private:
  SSL_SESSION* session_;
};

/// OpenSSL's new-session callback of client contexts: keeps a resumable
/// session on the stream it arrived on. Returns 1 when it took `sess`.
int on_new_session(SSL* ssl, SSL_SESSION* sess) {
  auto* self = static_cast<stream*>(SSL_get_app_data(ssl));
  if (self == nullptr || self->failed_ || SSL_SESSION_is_resumable(sess) != 1)
    return 0;
  try {
    self->ticket_ = std::make_shared<const ticket>(sess);
  } catch (const std::bad_alloc&) {
    return 0; // nothing may throw through OpenSSL; no ticket then
  }
  return 1;
}

// -- context -----------------------------------------------------------------

namespace {

bool apply_common(SSL_CTX* ctx, min_version min) {
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  // No session cache in either role: its periodic flush walks every cached
  // session (OPENSSL_LH_doall in a 10,000-login storm profile). Resumption
  // uses stateless TLS 1.3 tickets instead (see context::server/client).
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(ctx, 0);
  // TLS 1.3: AES-128-GCM first. OpenSSL's default order puts AES-256 first;
  // 128-bit keys are enough and faster: a full handshake (both sides, its
  // HKDF on SHA-256 instead of SHA-384) -5 to -7 %, a resumed one -9 %, a
  // 200-byte record -1 to -4 % (tls_bench, interleaved, session 12).
  if (SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:"
                                    "TLS_AES_256_GCM_SHA384:"
                                    "TLS_CHACHA20_POLY1305_SHA256") != 1)
    return false;
  int floor = min == min_version::tls1_3 ? TLS1_3_VERSION : TLS1_2_VERSION;
  if (SSL_CTX_set_min_proto_version(ctx, floor) != 1)
    return false;
  // TLS 1.2 (only when explicitly allowed): forward-secret AEAD suites only.
  return SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20") == 1;
}

} // namespace

result<std::shared_ptr<context>>
context::server(const std::string& cert_file, const std::string& key_file,
                min_version min, std::shared_ptr<ticket_keys> tickets) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr)
    return ssl_error(status_code::internal, "creating a TLS server context");
  std::shared_ptr<context> res{new context(ctx, true)};
  if (!apply_common(ctx, min))
    return ssl_error(status_code::internal, "configuring TLS");
  if (SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str()) != 1)
    return ssl_error(status_code::invalid_argument,
                     "loading certificate '" + cert_file + "'");
  if (SSL_CTX_use_PrivateKey_file(ctx, key_file.c_str(), SSL_FILETYPE_PEM) != 1)
    return ssl_error(status_code::invalid_argument,
                     "loading private key '" + key_file + "'");
  if (SSL_CTX_check_private_key(ctx) != 1)
    return ssl_error(status_code::invalid_argument,
                     "key '" + key_file + "' does not match certificate '" +
                       cert_file + "'");
  // One stateless ticket per handshake (OpenSSL's default is two): a client
  // that reconnects presents it and skips the certificate exchange, the
  // most expensive part of its handshake (the certificate's parse alone is
  // ~200 µs in OpenSSL 3.0; bench/tls_bench TlsHandshake). The server keeps
  // nothing per ticket; `tickets` seals them.
  if (tickets != nullptr) {
    res->tickets_ = std::move(tickets);
    res->tickets_->install(ctx);
    SSL_CTX_set_num_tickets(ctx, 1);
    SSL_CTX_set_timeout(
      ctx, static_cast<long>(res->tickets_->settings().lifetime_s));
  } else {
    // No keys, no tickets: without this OpenSSL would still seal them with
    // keys it makes per context, which no restart can open.
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  }
  return res;
}

result<std::shared_ptr<context>> context::client(const client_options& opts) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr)
    return ssl_error(status_code::internal, "creating a TLS client context");
  std::shared_ptr<context> res{new context(ctx, false)};
  if (!apply_common(ctx, opts.min))
    return ssl_error(status_code::internal, "configuring TLS");
  // Tickets the server sends go to the stream they came on (no cache).
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
                                        SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(ctx, on_new_session);
  if (!opts.pinned_fingerprint.empty()) {
    res->pinned_ = normalize_fingerprint(opts.pinned_fingerprint);
    if (res->pinned_.size() != 64)
      return status{status_code::invalid_argument,
                    "a SHA-256 fingerprint has 64 hex digits; got '" +
                      opts.pinned_fingerprint + "'"};
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, accept_any);
  } else if (opts.verify) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    if (!opts.ca_file.empty()) {
      if (SSL_CTX_load_verify_locations(ctx, opts.ca_file.c_str(), nullptr) !=
          1)
        return ssl_error(status_code::invalid_argument,
                         "loading CA file '" + opts.ca_file + "'");
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
      return ssl_error(status_code::internal,
                       "loading the system's CA certificates");
    }
    X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx),
                                X509_V_FLAG_PARTIAL_CHAIN);
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  }
  return res;
}

context::~context() {
  SSL_CTX_free(ctx_);
}

// -- stream
// --------------------------------------------------------------------

namespace {

/// Empties this thread's OpenSSL error queue before a call whose outcome
/// SSL_get_error reads. Peeks first: clearing walks all 16 slots (~800
/// instructions, per record; tls_bench), and the queue is almost always
/// empty already.
void clear_errors() {
  if (ERR_peek_error() != 0)
    ERR_clear_error();
}

} // namespace

stream::stream(std::shared_ptr<context> ctx, const std::string& sni)
  : ctx_(std::move(ctx)) {
  ssl_ = SSL_new(ctx_->native());
  in_ = BIO_new(BIO_s_mem());
  out_ = BIO_new(BIO_s_mem());
  if (ssl_ == nullptr || in_ == nullptr || out_ == nullptr) {
    failed_ = true;
    return;
  }
  BIO_set_mem_eof_return(in_, -1);
  BIO_set_mem_eof_return(out_, -1);
  SSL_set_bio(ssl_, in_, out_); // ssl_ owns both BIOs now
  SSL_set_app_data(ssl_, this); // for on_new_session
  if (ctx_->is_server()) {
    SSL_set_accept_state(ssl_);
  } else {
    SSL_set_connect_state(ssl_);
    if (!sni.empty()) {
      if (!is_ip_literal(sni))
        SSL_set_tlsext_host_name(ssl_, sni.c_str());
      if (ctx_->pinned().empty() &&
          SSL_get_verify_mode(ssl_) != SSL_VERIFY_NONE) {
        auto* param = SSL_get0_param(ssl_);
        if (is_ip_literal(sni))
          X509_VERIFY_PARAM_set1_ip_asc(param, sni.c_str());
        else
          X509_VERIFY_PARAM_set1_host(param, sni.c_str(), 0);
      }
    }
  }
}

void stream::release_buffers() {
  // (A record half read waits inside SSL, not in the BIO: it survives.)
  if (failed_ || ssl_ == nullptr || BIO_ctrl_pending(in_) != 0 ||
      BIO_ctrl_pending(out_) != 0)
    return;
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  if (in == nullptr || out == nullptr) {
    BIO_free(in);
    BIO_free(out);
    return; // keep the old ones
  }
  BIO_set_mem_eof_return(in, -1);
  BIO_set_mem_eof_return(out, -1);
  SSL_set_bio(ssl_, in, out); // frees the old pair
  in_ = in;
  out_ = out;
  // And the record buffers SSL_MODE_RELEASE_BUFFERS leaves behind: a
  // message after the handshake (a client's session ticket) sets up a
  // 17 KiB write buffer that stays until the next write, which an idle
  // client may not make for minutes. Only when SSL holds no unread bytes
  // (a record half read sits in its read buffer), and only on a libssl
  // with the fix for CVE-2024-4741 (3.0.14), where SSL_free_buffers
  // itself refuses to free a buffer in use.
  if (SSL_has_pending(ssl_) == 0 && OpenSSL_version_num() >= 0x300000e0L)
    (void)SSL_free_buffers(ssl_);
}

stream::~stream() {
  if (ssl_ != nullptr) {
    // OpenSSL marks the session of a connection freed without a
    // close_notify "not resumable" (an old rule, meant for connections that
    // ended in a fatal alert, which still mark it). A client reconnects
    // precisely when the network dropped the connection, or after the
    // server's goodbye and close_notify, so a client stream that did not
    // fail counts as shut down: its ticket stays usable.
    if (!ctx_->is_server() && established_ && (!failed_ || peer_closed_))
      SSL_set_shutdown(ssl_, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(ssl_);
  } else {
    if (in_ != nullptr)
      BIO_free(in_);
    if (out_ != nullptr)
      BIO_free(out_);
  }
}

status stream::fail(const char* what) {
  failed_ = true;
  ticket_.reset(); // never resume what ended in a TLS error
  long verify = ssl_ != nullptr ? SSL_get_verify_result(ssl_) : X509_V_OK;
  if (!ctx_->is_server() && verify != X509_V_OK) {
    std::string msg = "the server's TLS certificate is not trusted (";
    msg += X509_verify_cert_error_string(verify);
    msg += "): pass the server's certificate as the CA file, or pin its "
           "SHA-256 fingerprint (parleyd prints it when it starts)";
    ERR_clear_error();
    return status{status_code::unauthenticated, std::move(msg)};
  }
  return ssl_error(status_code::protocol_error, what);
}

void stream::drain(bytes& to_network) {
  size_t pending = BIO_ctrl_pending(out_);
  if (pending == 0)
    return;
  auto old = to_network.size();
  to_network.resize(old + pending);
  int n = BIO_read(out_, to_network.data() + old, static_cast<int>(pending));
  to_network.resize(old + (n > 0 ? static_cast<size_t>(n) : 0));
}

void stream::resume(std::shared_ptr<const ticket> t) {
  if (t == nullptr || failed_ || ctx_->is_server() || established_)
    return;
  // SSL_set_session takes its own reference; a ticket the server refuses
  // just means a full handshake.
  SSL_set_session(ssl_, t->native());
}

bool stream::resumed() const noexcept {
  return established_ && SSL_session_reused(ssl_) == 1;
}

status stream::start(bytes& to_network) {
  if (failed_)
    return status{status_code::internal, "TLS stream could not be created"};
  bytes ignored;
  return drive(ignored, to_network);
}

status stream::drive(bytes& plaintext, bytes& to_network) {
  clear_errors();
  if (!established_) {
    int r = SSL_do_handshake(ssl_);
    if (r != 1) {
      int e = SSL_get_error(ssl_, r);
      drain(to_network); // alerts and handshake records
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return {};
      return fail("TLS handshake failed");
    }
    established_ = true;
    if (!ctx_->is_server() && !ctx_->pinned().empty() &&
        normalize_fingerprint(peer_fingerprint()) != ctx_->pinned()) {
      failed_ = true;
      ticket_.reset();
      return status{status_code::unauthenticated,
                    "the server's certificate fingerprint " +
                      peer_fingerprint() +
                      " does not match the pinned one: check the "
                      "fingerprint parleyd printed, or that you reach the "
                      "right server"};
    }
    if (!pending_.empty()) {
      bytes queued;
      queued.swap(pending_);
      if (auto st = send(queued.data(), queued.size(), to_network); !st)
        return st;
    }
  }
  for (;;) {
    // Into a per-thread record buffer, then appended: resizing `plaintext`
    // by 16 KiB per record zero-filled 16 KiB each time (memset showed in
    // the profile).
    thread_local unsigned char record[16384];
    int r = SSL_read(ssl_, record, sizeof(record));
    if (r > 0) {
      plaintext.insert(plaintext.end(), record, record + r);
      // Nothing left to decrypt: another SSL_read would only say
      // WANT_READ, at the cost of a record's worth of OpenSSL's state
      // machine (tls_bench). Any answer it owes is in `out_` already.
      if (BIO_ctrl_pending(in_) == 0 && SSL_has_pending(ssl_) == 0) {
        drain(to_network);
        return {};
      }
      continue;
    }
    int e = SSL_get_error(ssl_, r);
    drain(to_network);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
      return {};
    if (e == SSL_ERROR_ZERO_RETURN) {
      failed_ = true;
      peer_closed_ = true; // a clean end: the ticket stays good
      return status{status_code::unavailable, "the peer closed TLS"};
    }
    return fail("TLS read failed");
  }
}

status stream::receive(const uint8_t* data, size_t n, bytes& plaintext,
                       bytes& to_network) {
  if (failed_)
    return status{status_code::failed_precondition,
                  "TLS stream failed earlier"};
  while (n > 0) {
    int w = BIO_write(in_, data, static_cast<int>(n));
    if (w <= 0)
      return status{status_code::internal, "TLS input buffer refused data"};
    data += w;
    n -= static_cast<size_t>(w);
  }
  return drive(plaintext, to_network);
}

status stream::send(const uint8_t* data, size_t n, bytes& to_network) {
  if (failed_)
    return status{status_code::failed_precondition,
                  "TLS stream failed earlier"};
  if (!established_) {
    pending_.insert(pending_.end(), data, data + n);
    return {};
  }
  clear_errors();
  while (n > 0) {
    int w = SSL_write(ssl_, data, static_cast<int>(n));
    if (w <= 0) {
      drain(to_network);
      return fail("TLS write failed");
    }
    data += w;
    n -= static_cast<size_t>(w);
  }
  drain(to_network);
  return {};
}

void stream::shutdown(bytes& to_network) {
  if (established_ && !failed_) {
    SSL_shutdown(ssl_);
    drain(to_network);
  }
}

std::string stream::version() const {
  return established_ ? SSL_get_version(ssl_) : "";
}

std::string stream::cipher() const {
  if (!established_)
    return {};
  const SSL_CIPHER* c = SSL_get_current_cipher(ssl_);
  const char* name = c != nullptr ? SSL_CIPHER_standard_name(c) : nullptr;
  return name != nullptr ? name : "";
}

std::string stream::peer_fingerprint() const {
  X509* cert = SSL_get1_peer_certificate(ssl_);
  if (cert == nullptr)
    return {};
  auto fp = fingerprint(cert);
  X509_free(cert);
  return fp;
}

} // namespace parley::tls
