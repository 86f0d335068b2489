#include "ticket_keys.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <sys/stat.h>
#include <unistd.h>

namespace parley::tls {

namespace {

constexpr const char* header =
  "# parleyd's TLS session-ticket keys: as secret as the certificate's key.\n"
  "# Deleting this file costs each client one full handshake, nothing else.\n"
  "# v1 <created, unix seconds> <name> <AES-256 key> <HMAC-SHA256 key>\n";

/// More than any sane rotation keeps (lifetime / rotate + 2): a bound on
/// what a hand-edited file can make the server hold.
constexpr size_t max_keys = 64;

const char* hex_digits = "0123456789abcdef";

template<size_t N>
std::string to_hex(const std::array<uint8_t, N>& a) {
  std::string out;
  out.reserve(2 * N);
  for (auto b : a) {
    out += hex_digits[b >> 4];
    out += hex_digits[b & 15];
  }
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

template<size_t N>
bool from_hex(const std::string& s, std::array<uint8_t, N>& out) {
  if (s.size() != 2 * N)
    return false;
  for (size_t i = 0; i < N; ++i) {
    int hi = hex_value(s[2 * i]);
    int lo = hex_value(s[2 * i + 1]);
    if (hi < 0 || lo < 0)
      return false;
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return true;
}

std::optional<ticket_keys::key> make_key(int64_t now) {
  ticket_keys::key k;
  if (RAND_bytes(k.name.data(), static_cast<int>(k.name.size())) != 1 ||
      RAND_bytes(k.aes.data(), static_cast<int>(k.aes.size())) != 1 ||
      RAND_bytes(k.hmac.data(), static_cast<int>(k.hmac.size())) != 1)
    return std::nullopt;
  k.created = now;
  return k;
}

/// AES-256-CBC, fetched once: handing OpenSSL 3 the legacy EVP_aes_256_cbc()
/// makes it fetch the provider's implementation again at every handshake.
const EVP_CIPHER* ticket_cipher() {
  static EVP_CIPHER* cipher = EVP_CIPHER_fetch(nullptr, "AES-256-CBC", nullptr);
  return cipher;
}

/// OpenSSL's ticket callback (SSL_CTX_set_tlsext_ticket_key_evp_cb). enc=1:
/// seal a new ticket (1: done, -1: error). enc=0: open one (0: unknown or
/// expired key, so a full handshake; 1: done; 2: done, and send a new
/// ticket; -1: error).
int on_ticket_key(SSL* ssl, unsigned char* name, unsigned char* iv,
                  EVP_CIPHER_CTX* cctx, EVP_MAC_CTX* hctx, int enc) {
  auto* keys =
    static_cast<ticket_keys*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  const EVP_CIPHER* cipher = ticket_cipher();
  if (keys == nullptr || cipher == nullptr)
    return -1;
  auto now = static_cast<int64_t>(std::time(nullptr));
  ticket_keys::key k;
  int rc = 1;
  try { // nothing may throw through OpenSSL
    if (enc == 1) {
      k = keys->sealing(now);
    } else {
      auto found = keys->opening(name, now);
      if (!found)
        return 0;
      k = *found;
      OPENSSL_cleanse(&*found, sizeof *found);
      // 2, not 1: OpenSSL sends a TLS 1.3 client a new ticket after a
      // resumed handshake only when asked to renew, and a ticket should be
      // used once (RFC 8446, C.4): the client's next reconnect needs a new
      // one, sealed with the current key.
      rc = 2;
    }
  } catch (const std::exception&) {
    OPENSSL_cleanse(&k, sizeof k);
    return -1;
  }
  // Copies of the key on this stack are wiped on every way out.
  struct wipe {
    ticket_keys::key& k;
    ~wipe() { OPENSSL_cleanse(&k, sizeof k); }
  } wiper{k};
  if (enc == 1) {
    if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(cipher)) != 1)
      return -1;
    std::memcpy(name, k.name.data(), k.name.size());
    if (EVP_EncryptInit_ex(cctx, cipher, nullptr, k.aes.data(), iv) != 1)
      return -1;
  } else if (EVP_DecryptInit_ex(cctx, cipher, nullptr, k.aes.data(), iv) != 1) {
    return -1;
  }
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
    OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k.hmac.data(),
                                      k.hmac.size()),
    OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
    OSSL_PARAM_construct_end()};
  if (EVP_MAC_CTX_set_params(hctx, params) != 1)
    return -1;
  return rc;
}

} // namespace

result<std::shared_ptr<ticket_keys>> ticket_keys::open(const std::string& path,
                                                       options o, int64_t now) {
  if (o.rotate_s <= 0 || o.lifetime_s <= 0)
    return status{status_code::invalid_argument,
                  "ticket keys: the rotation and the ticket lifetime must be "
                  "positive seconds"};
  std::shared_ptr<ticket_keys> self{new ticket_keys(path, o)};
  bool loaded = false;
  if (!path.empty()) {
    std::ifstream in{path};
    if (in) {
      loaded = true;
      // A file others may read (copied in, or made by hand) is made
      // private before its keys are used.
      struct stat st;
      if (::stat(path.c_str(), &st) != 0 ||
          ((st.st_mode & 077) != 0 && ::chmod(path.c_str(), 0600) != 0))
        return status{status_code::io_error,
                      "ticket keys '" + path +
                        "' are readable by others and cannot be made "
                        "private (" +
                        std::strerror(errno) + "): chmod 600 it or delete it"};
      std::string line;
      int n = 0;
      while (std::getline(in, line)) {
        ++n;
        if (line.empty() || line[0] == '#')
          continue;
        std::istringstream fields{line};
        std::string version, name, aes, hmac, rest;
        key k;
        if (!(fields >> version >> k.created >> name >> aes >> hmac) ||
            (fields >> rest) || version != "v1" || !from_hex(name, k.name) ||
            !from_hex(aes, k.aes) || !from_hex(hmac, k.hmac))
          return status{status_code::corruption,
                        "ticket keys '" + path + "', line " +
                          std::to_string(n) +
                          ": not 'v1 <created> <32 hex> <64 hex> <64 hex>': "
                          "delete the file and the server makes new keys"};
        self->keys_.push_back(k);
      }
      if (in.bad())
        return status{status_code::io_error, "cannot read ticket keys '" +
                                               path +
                                               "': " + std::strerror(errno)};
    } else if (errno != ENOENT) {
      return status{status_code::io_error, "cannot read ticket keys '" + path +
                                             "': " + std::strerror(errno)};
    }
  }
  // Kept in file order, which is the order they were made: the last one
  // seals. (Sorting by creation time would let a key made before the clock
  // went back take over sealing from the newer one.)
  if (self->keys_.size() > max_keys)
    self->keys_.erase(self->keys_.begin(),
                      self->keys_.end() - static_cast<ptrdiff_t>(max_keys));
  std::lock_guard<std::mutex> g{self->mtx_};
  if (self->maintain(now) || !loaded)
    if (auto st = self->save(); !st)
      return st;
  if (self->keys_.empty())
    return status{status_code::internal,
                  "ticket keys: the random generator failed"};
  return self;
}

bool ticket_keys::maintain(int64_t now) {
  // A key opens tickets until the last one it sealed expired; a key from
  // further in the future than that (the clock went back) goes too.
  auto span = o_.rotate_s + o_.lifetime_s;
  auto n = keys_.size();
  keys_.erase(std::remove_if(keys_.begin(), keys_.end(),
                             [&](const key& k) {
                               return now - k.created >= span ||
                                      k.created - now >= span;
                             }),
              keys_.end());
  bool changed = keys_.size() != n;
  if (keys_.empty() || now - keys_.back().created >= o_.rotate_s ||
      keys_.back().created - now >= o_.rotate_s) {
    if (auto k = make_key(now)) {
      keys_.push_back(*k);
      changed = true;
    }
  }
  return changed;
}

status ticket_keys::save() const {
  if (path_.empty())
    return {};
  std::string data = header;
  for (auto& k : keys_)
    data += "v1 " + std::to_string(k.created) + ' ' + to_hex(k.name) + ' ' +
            to_hex(k.aes) + ' ' + to_hex(k.hmac) + '\n';
  // Written beside, synced, then renamed over: a crash leaves the old file
  // or the new one. Created 0600, never readable by others in between.
  // Any leftover tmp file (or a link planted in its place) is removed and
  // the file made new: O_EXCL|O_NOFOLLOW never writes through a link.
  struct wipe {
    std::string& s;
    ~wipe() { OPENSSL_cleanse(s.data(), s.size()); }
  } wiper{data};
  auto tmp = path_ + ".tmp";
  ::unlink(tmp.c_str());
  int fd = ::open(tmp.c_str(),
                  O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0)
    return status{status_code::io_error, "cannot write ticket keys '" + tmp +
                                           "': " + std::strerror(errno)};
  size_t done = 0;
  while (done < data.size()) {
    auto w = ::write(fd, data.data() + done, data.size() - done);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0) {
      auto err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return status{status_code::io_error, "cannot write ticket keys '" + tmp +
                                             "': " + std::strerror(err)};
    }
    done += static_cast<size_t>(w);
  }
  bool ok = ::fchmod(fd, 0600) == 0 && ::fsync(fd) == 0;
  auto err = errno;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path_.c_str()) != 0) {
    if (ok)
      err = errno;
    ::unlink(tmp.c_str());
    return status{status_code::io_error, "cannot install ticket keys '" +
                                           path_ + "': " + std::strerror(err)};
  }
  // The rename itself is durable only once the directory is synced.
  auto slash = path_.rfind('/');
  auto dir = slash == std::string::npos
               ? std::string{"."}
               : path_.substr(0, slash == 0 ? 1 : slash);
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0 || ::fsync(dfd) != 0) {
    err = errno;
    if (dfd >= 0)
      ::close(dfd);
    return status{status_code::io_error,
                  "cannot sync directory '" + dir +
                    "' after writing ticket keys: " + std::strerror(err)};
  }
  ::close(dfd);
  return {};
}

ticket_keys::key ticket_keys::sealing(int64_t now) {
  std::function<void(const status&)> report;
  status saved;
  key k;
  {
    std::lock_guard<std::mutex> g{mtx_};
    // Once per rotation: the file is written with the lock held, so a
    // handshake or two may wait a millisecond.
    if (maintain(now)) {
      saved = save();
      if (!saved)
        report = on_save_error_;
    }
    if (keys_.empty()) // the random generator failed at every rotation
      throw std::runtime_error("ticket keys: no key to seal a ticket with");
    k = keys_.back();
  }
  if (report)
    report(saved);
  return k;
}

std::optional<ticket_keys::key> ticket_keys::opening(const uint8_t* name,
                                                     int64_t now) {
  std::lock_guard<std::mutex> g{mtx_};
  auto span = o_.rotate_s + o_.lifetime_s;
  for (auto i = keys_.size(); i-- > 0;) {
    auto& k = keys_[i];
    if (std::memcmp(k.name.data(), name, k.name.size()) != 0)
      continue;
    if (now - k.created >= span || k.created - now >= span)
      return std::nullopt;
    return k;
  }
  return std::nullopt;
}

std::vector<ticket_keys::key> ticket_keys::snapshot() const {
  std::lock_guard<std::mutex> g{mtx_};
  return keys_;
}

void ticket_keys::on_save_error(std::function<void(const status&)> f) {
  std::lock_guard<std::mutex> g{mtx_};
  on_save_error_ = std::move(f);
}

void ticket_keys::install(SSL_CTX* ctx) {
  SSL_CTX_set_app_data(ctx, this);
  SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, on_ticket_key);
}

} // namespace parley::tls
