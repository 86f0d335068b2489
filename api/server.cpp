// parley::server: the embeddable server facade over the server actors.

#include <parley/server.hpp>

#include "actors/common/io_scheduler.hpp"
#include "actors/common/poller.hpp"
#include "actors/server/connection.hpp"
#include "actors/server/context.hpp"
#include "api/users_add.hpp"
#include "codec/codec.hpp"

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include <openssl/rand.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>

namespace parley {

namespace fs = std::filesystem;

namespace srv {

uint64_t now_ms() {
  using namespace std::chrono;
  return static_cast<uint64_t>(
    duration_cast<milliseconds>(system_clock::now().time_since_epoch())
      .count());
}

} // namespace srv

namespace {

status write_private_file(const fs::path& path, const std::string& data,
                          mode_t mode) {
  auto tmp = path;
  tmp += ".tmp";
  {
    std::ofstream out{tmp, std::ios::binary | std::ios::trunc};
    if (!out)
      return status{status_code::io_error, "cannot write '" + tmp.string() +
                                             "': " + std::strerror(errno)};
    out << data;
    if (!out)
      return status{status_code::io_error,
                    "cannot write '" + tmp.string() + "'"};
  }
  if (::chmod(tmp.c_str(), mode) != 0 ||
      ::rename(tmp.c_str(), path.c_str()) != 0)
    return status{status_code::io_error, "cannot install '" + path.string() +
                                           "': " + std::strerror(errno)};
  return {};
}

result<std::string> read_file(const fs::path& path) {
  std::ifstream in{path, std::ios::binary};
  if (!in)
    return status{status_code::io_error, "cannot read '" + path.string() +
                                           "': " + std::strerror(errno)};
  std::string data{std::istreambuf_iterator<char>{in},
                   std::istreambuf_iterator<char>{}};
  return data;
}

std::string random_hex(size_t n) {
  std::vector<unsigned char> buf(n);
  RAND_bytes(buf.data(), static_cast<int>(n));
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (auto b : buf) {
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out;
}

/// Binds and listens; returns the socket and the bound port.
result<std::pair<int, uint16_t>> listen_on(const std::string& host,
                                           uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  auto port_str = std::to_string(port);
  if (int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(),
                           port_str.c_str(), &hints, &res);
      rc != 0)
    return status{status_code::invalid_argument,
                  "cannot resolve listen address '" + host +
                    "': " + gai_strerror(rc)};
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard{res, freeaddrinfo};
  int fd = ::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return status{status_code::io_error,
                  std::string{"socket(): "} + std::strerror(errno)};
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
    auto err = errno;
    ::close(fd);
    return status{
      status_code::unavailable,
      "cannot listen on " + host + ":" + port_str + ": " + std::strerror(err) +
        (err == EADDRINUSE ? " (another parleyd? pick another port with --port)"
                           : "")};
  }
  if (::listen(fd, 4096) != 0) {
    auto err = errno;
    ::close(fd);
    return status{status_code::io_error,
                  std::string{"listen(): "} + std::strerror(err)};
  }
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  uint16_t bound = addr.ss_family == AF_INET6
                     ? ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port)
                     : ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  return std::make_pair(fd, bound);
}

} // namespace

namespace {

/// The value of `f` once set, or nullopt after `limit` or when the actor
/// that held the promise was gone (a broken promise).
template<class T>
auto wait_for(std::future<T>& f, std::chrono::seconds limit) {
  using value = std::conditional_t<std::is_void_v<T>, bool, T>;
  std::optional<value> out;
  if (f.wait_for(limit) != std::future_status::ready)
    return out;
  try {
    if constexpr (std::is_void_v<T>) {
      f.get();
      out = true;
    } else {
      out = f.get();
    }
  } catch (const std::future_error&) {
    // broken promise: the actor went away without answering
  }
  return out;
}

} // namespace

struct server::impl {
  /// Socket readiness for every connection; first member, so destroyed
  /// last (after the actor system and its sessions).
  std::shared_ptr<parley::net::poller> poller;
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> owned_sys; // ours, or null when hosted
  caf::actor_system* sys = nullptr;
  std::shared_ptr<parley::srv::context> ctx;
  caf::actor acceptor;
  uint16_t port = 0;
  std::string fingerprint;
  std::string cert_file;
  std::mutex mtx;
  std::condition_variable cv;
  bool stop_requested = false;
  bool stopped = false;
  std::thread stopper;

  template<class Frame>
  result<codec::frame> admin(const Frame& f) {
    codec::buffer body;
    if (auto e = codec::encode(f, body); e != codec::errc::ok)
      return codec::to_status(e, "admin request");
    body.erase(body.begin(), body.begin() + codec::header_size);
    auto slot = std::make_shared<std::promise<parley::srv::bytes>>();
    auto answer_future = slot->get_future();
    caf::anon_send(ctx->storage, parley::srv::admin_atom::value,
                   static_cast<uint8_t>(Frame::type), std::move(body),
                   std::move(slot));
    auto answer = wait_for(answer_future, std::chrono::seconds(30));
    if (!answer)
      return status{status_code::unavailable,
                    "the server's storage did not answer within 30 s"};
    result<codec::frame> out{
      status{status_code::internal, "empty admin answer"}};
    if (answer->size() >= codec::header_size) {
      codec::frame f;
      auto t = static_cast<codec::frame_type>((*answer)[0]);
      auto e = codec::decode(t, answer->data() + codec::header_size,
                             answer->size() - codec::header_size, f);
      if (e != codec::errc::ok)
        out = codec::to_status(e, "admin answer");
      else
        out = std::move(f);
    }
    return out;
  }

  /// The status of an admin answer that is a reply frame.
  static status reply_status(const result<codec::frame>& r) {
    if (!r)
      return r.error();
    if (auto* rep = std::get_if<codec::reply>(&*r); rep != nullptr)
      return rep->code == status_code::ok ? status{}
                                          : status{rep->code, rep->text};
    return {};
  }

  void shutdown() {
    ctx->stopping = true;
    // The acceptor stops accepting and tells every connection (logged in,
    // still in the handshake, or admin); it answers once all are gone.
    auto gone = std::make_shared<std::promise<void>>();
    auto gone_future = gone->get_future();
    caf::anon_send(acceptor, parley::srv::shutdown_atom::value,
                   std::move(gone));
    wait_for(gone_future, std::chrono::seconds(10));
    auto flushed = std::make_shared<std::promise<void>>();
    auto flushed_future = flushed->get_future();
    caf::anon_send(ctx->storage, parley::srv::flush_atom::value,
                   std::move(flushed));
    wait_for(flushed_future, std::chrono::seconds(30));
    if (auto s = ctx->store->sync(); !s)
      ctx->log->error("final sync failed: {}", s.to_string());
    caf::anon_send_exit(ctx->storage, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(ctx->dispatcher, caf::exit_reason::user_shutdown);
    ctx->log->info("stopped");
  }
};

server::server(std::unique_ptr<impl> p) : impl_(std::move(p)) {
  // nop
}

result<std::unique_ptr<server>>
server::start(const server_options& opts, std::shared_ptr<server_hooks> hooks) {
  return start_on(nullptr, opts, std::move(hooks));
}

result<std::unique_ptr<server>>
server::start_on(caf::actor_system* host, const server_options& opts,
                 std::shared_ptr<server_hooks> hooks) {
  auto p = std::make_unique<impl>();
  auto ctx = std::make_shared<parley::srv::context>();
  ctx->opts = opts;
  ctx->hooks = std::move(hooks);
  ctx->logins =
    std::make_unique<parley::srv::login_limiter>(opts.login_failures_per_min);
  // Logging: one logger per server object, to stderr.
  static std::atomic<int> instances{0};
  ctx->log = std::make_shared<spdlog::logger>(
    "parleyd-" + std::to_string(instances++),
    std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  auto level = spdlog::level::from_str(opts.log_level);
  if (level == spdlog::level::off && opts.log_level != "off")
    return status{status_code::invalid_argument,
                  "unknown log level '" + opts.log_level +
                    "': use trace, debug, info, warn, error or off"};
  ctx->log->set_level(level);
  ctx->log->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
  // Data directory.
  std::error_code ec;
  fs::path dir{opts.data_dir};
  fs::create_directories(dir, ec);
  if (ec)
    return status{status_code::io_error, "cannot create data directory '" +
                                           dir.string() + "': " + ec.message()};
  ::chmod(dir.c_str(), 0700);
  // Certificate: given, or generated once into the data directory.
  std::string cert = opts.cert_file;
  std::string key = opts.key_file;
  if (cert.empty() != key.empty())
    return status{status_code::invalid_argument,
                  "give both a certificate and a key file, or neither (then "
                  "a self-signed certificate is generated)"};
  if (cert.empty()) {
    cert = (dir / "cert.pem").string();
    key = (dir / "key.pem").string();
    if (!fs::exists(cert) || !fs::exists(key)) {
      auto id = tls::generate_self_signed("localhost");
      if (!id)
        return id.error();
      if (auto s = write_private_file(key, id->key_pem, 0600); !s)
        return s;
      if (auto s = write_private_file(cert, id->cert_pem, 0644); !s)
        return s;
      ctx->log->info("generated a self-signed certificate: {}", cert);
    }
  }
  // Session-ticket keys, kept across restarts. The file is only a cache of
  // resumptions: one that cannot be read or written costs each client a
  // full handshake, so it is a warning, not a failed start.
  std::shared_ptr<tls::ticket_keys> tickets;
  if (opts.tls_ticket_lifetime_s > 0) {
    tls::ticket_keys::options to;
    to.lifetime_s = opts.tls_ticket_lifetime_s;
    to.rotate_s = std::max<int64_t>(1, to.lifetime_s / 2);
    auto path = (dir / "ticket.keys").string();
    auto now = static_cast<int64_t>(std::time(nullptr));
    auto keys = tls::ticket_keys::open(path, to, now);
    if (!keys && keys.error().code() == status_code::corruption) {
      ctx->log->warn("{}; making new ones", keys.error().message());
      fs::remove(path, ec);
      keys = tls::ticket_keys::open(path, to, now);
    }
    if (!keys) {
      ctx->log->warn("{}: session tickets from before this start will not "
                     "resume, and neither will this start's after a restart",
                     keys.error().message());
      keys = tls::ticket_keys::open({}, to, now);
    }
    if (!keys)
      return keys.error();
    tickets = *keys;
    auto log = ctx->log;
    tickets->on_save_error([log](const status& st) {
      log->warn("{}: tickets sealed with the new key will not resume after "
                "a restart",
                st.message());
    });
  }
  auto tls_ctx = tls::context::server(
    cert, key,
    opts.allow_tls12 ? tls::min_version::tls1_2 : tls::min_version::tls1_3,
    std::move(tickets));
  if (!tls_ctx)
    return tls_ctx.error();
  ctx->tls = *tls_ctx;
  auto fp = tls::fingerprint_of_file(cert);
  if (!fp)
    return fp.error();
  p->fingerprint = *fp;
  p->cert_file = cert;
  // Admin key: generated once, mode 0600.
  auto key_path = dir / "admin.key";
  if (fs::exists(key_path)) {
    auto k = read_file(key_path);
    if (!k)
      return k.error();
    ctx->admin_key = *k;
    while (!ctx->admin_key.empty() &&
           (ctx->admin_key.back() == '\n' || ctx->admin_key.back() == '\r'))
      ctx->admin_key.pop_back();
    if (ctx->admin_key.size() < 32)
      return status{status_code::failed_precondition,
                    "the admin key in '" + key_path.string() +
                      "' is shorter than 32 characters (truncated?): "
                      "delete the file and parleyd makes a new one"};
  } else {
    ctx->admin_key = random_hex(32);
    if (auto s = write_private_file(key_path, ctx->admin_key + "\n", 0600); !s)
      return s;
  }
  // Store.
  store::server_store_options so;
  so.env.map_size = opts.map_size;
  so.env.max_map_size = opts.max_map_size;
  so.env.sync = opts.sync;
  so.retention_s = opts.retention_s;
  so.inbox_quota = opts.inbox_quota;
  so.token_ttl_s = opts.token_ttl_s;
  so.retract_window_s = opts.retract_window_s;
  auto st = store::server_store::open((dir / "store").string(), so);
  if (!st)
    return st.error().annotate("opening the store in '" + dir.string() + "'");
  ctx->store = std::shared_ptr<store::server_store>(std::move(*st));
  // Socket before the actor system: a port in use fails fast and cleanly.
  auto sock = listen_on(opts.host, opts.port);
  if (!sock)
    return sock.error();
  p->port = sock->second;
  // Actor system: the host's, or our own.
  if (host != nullptr) {
    if (!host->has_middleman()) {
      ::close(sock->first);
      return status{status_code::failed_precondition,
                    "the host's actor system has no middleman: call "
                    "parley::interop::prepare(cfg) before creating it"};
    }
    p->sys = host;
  } else {
    auto threads = opts.threads != 0
                     ? opts.threads
                     : std::max(2u, std::thread::hardware_concurrency());
    p->cfg.set("scheduler.max-threads", static_cast<size_t>(threads));
    // The workers poll the sockets themselves (io_scheduler.hpp) and sleep
    // in epoll_wait when idle: no poller thread, no hop per readable
    // socket, and no spinning (CAF's work-stealing default spins, then
    // sleeps 50 us at a time, burning the cores that the other process or
    // the storage thread needs).
    parley::net::load_io_scheduler(p->cfg);
    p->cfg.set("logger.verbosity", caf::atom("quiet"));
    p->cfg.load<caf::io::middleman>();
    p->owned_sys = std::make_unique<caf::actor_system>(p->cfg);
    p->sys = p->owned_sys.get();
  }
  p->poller = parley::net::io_poller_of(*p->sys);
  if (p->poller == nullptr) { // a host's scheduler: a poller thread
    auto poll = parley::net::poller::start("parley.io");
    if (!poll) {
      ::close(sock->first);
      return poll.error();
    }
    p->poller = std::move(*poll);
  }
  ctx->poller = p->poller.get();
  ctx->storage = parley::srv::make_storage_actor(*p->sys, ctx);
  ctx->dispatcher = parley::srv::make_dispatcher_actor(*p->sys, ctx);
  p->acceptor = parley::srv::make_acceptor(*p->sys, sock->first, ctx);
  p->ctx = ctx;
  ctx->log->info("parleyd {} listening on {}:{} (TLS {}), data in {}",
                 PARLEY_VERSION, opts.host, p->port,
                 opts.allow_tls12 ? "1.2+" : "1.3", dir.string());
  ctx->log->info("certificate {} SHA-256 {}", cert, p->fingerprint);
  return std::unique_ptr<server>(new server(std::move(p)));
}

server::~server() {
  stop();
  wait();
  if (impl_->stopper.joinable())
    impl_->stopper.join();
}

uint16_t server::port() const {
  return impl_->port;
}

const std::string& server::fingerprint() const {
  return impl_->fingerprint;
}

const std::string& server::cert_file() const {
  return impl_->cert_file;
}

const std::string& server::admin_key() const {
  return impl_->ctx->admin_key;
}

void server::stop() {
  std::lock_guard<std::mutex> guard{impl_->mtx};
  if (impl_->stop_requested)
    return;
  impl_->stop_requested = true;
  impl_->stopper = std::thread{[p = impl_.get()] {
    p->shutdown();
    std::lock_guard<std::mutex> g{p->mtx};
    p->stopped = true;
    p->cv.notify_all();
  }};
}

void server::wait() {
  std::unique_lock<std::mutex> guard{impl_->mtx};
  impl_->cv.wait(guard, [this] { return impl_->stopped; });
}

uint64_t server::sessions() const {
  auto slot = std::make_shared<std::promise<uint64_t>>();
  auto n = slot->get_future();
  caf::anon_send(impl_->ctx->dispatcher, parley::srv::count_atom::value,
                 std::move(slot));
  return wait_for(n, std::chrono::seconds(10)).value_or(0);
}

status server::app_add(const std::string& app_id, const std::string& name) {
  return impl::reply_status(
    impl_->admin(codec::admin_app_add{0, app_id, name}));
}

result<access_token> server::user_add(const std::string& app_id,
                                      const std::string& address,
                                      const std::string& name,
                                      uint32_t token_ttl_s) {
  auto r =
    impl_->admin(codec::admin_user_add{0, app_id, address, name, token_ttl_s});
  if (auto s = impl::reply_status(r); !s)
    return s;
  auto* t = std::get_if<codec::admin_token>(&*r);
  if (t == nullptr)
    return status{status_code::internal, "unexpected answer to user add"};
  return access_token{t->app_id, t->address, t->token, t->expires_at_ms};
}

result<std::vector<access_token>>
server::users_add(const std::string& app_id,
                  const std::vector<std::string>& addresses,
                  uint32_t token_ttl_s) {
  return detail::users_add(
    app_id, addresses, token_ttl_s,
    [this](codec::admin_users_add f) -> result<codec::frame> {
      auto r = impl_->admin(f);
      if (auto s = impl::reply_status(r); !s)
        return s;
      return r;
    });
}

status server::token_revoke(const std::string& app_id,
                            const std::string& address,
                            const std::string& token) {
  return impl::reply_status(
    impl_->admin(codec::admin_token_revoke{0, app_id, address, token}));
}

status server::user_disable(const std::string& app_id,
                            const std::string& address, bool disabled) {
  return impl::reply_status(
    impl_->admin(codec::admin_user_disable{0, app_id, address, disabled}));
}

} // namespace parley

namespace parley {

result<std::unique_ptr<server>>
interop_start(caf::actor_system& sys, const server_options& opts,
              std::shared_ptr<server_hooks> hooks) {
  return server::start_on(&sys, opts, std::move(hooks));
}

} // namespace parley
