// The wire's floor: what the chat scenario's traffic costs with nothing of
// Parley's work in it. Two processes on loopback, as parleyd and parley-sim
// run: a relay (one thread, epoll) and N users (one thread, epoll, one TLS
// 1.3 connection each, Parley's own client and server SSL_CTX settings).
// Each message is the five frames a 1:1 message with a DELIVERED receipt
// carries in Parley (send, the SENT answer, the delivery, the receiver's
// ack, the DELIVERED status), of about Parley's sizes; the relay stores
// nothing and looks nothing up but the receiver's connection. Every event
// loop turn leaves one TLS record and one send() per connection that has
// output, as Parley's sessions and client actors do (a flush per mailbox
// turn), and reads with one recv() per readable socket.
//
// So this measures the kernel's loopback TCP, the epoll wake-ups and
// OpenSSL's record layer for the scenario's shape (users, messages in
// flight per user, or a rate), i.e. the part of a message's cost that no
// code above the socket can take away without carrying more frames per
// socket call. BENCHMARKS.md compares it with parley-sim in the same shape.
//
//   build/bin/wire_floor --users 1000 --window 4 --duration 10
//   build/bin/wire_floor --users 1000 --rate 20000 --duration 10
//
// Output: one JSON object (delivered_per_s, latency_ms from the scheduled
// send to the receiver's read, CPU µs per message of each process, socket
// calls per message).

#include "actors/tls/tls.hpp"
#include "tools/sim/histogram.hpp"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <vector>

using namespace parley;

namespace {

// -- frames: u32 length (of what follows), u8 type, body
// ---------------------------------------------------------------------------

enum : uint8_t { hello = 1, send_f, sent_f, msg_f, ack_f, delivered_f };

// Frames of about what Parley's frames of a 100-byte message weigh: send
// 129 bytes (Parley's ~130), its SENT status 53 (~45), the delivery 145
// (~150), an ack 29 (~12), the DELIVERED status 53 (~45).
constexpr size_t send_pad = 100, status_pad = 24, ack_pad = 0;

struct header {
  uint32_t from = 0, to = 0;
  uint64_t id = 0;
  int64_t sched_ns = 0;
};

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
           std::chrono::steady_clock::now().time_since_epoch())
    .count();
}

void put_frame(std::vector<uint8_t>& out, uint8_t type, const header& h,
               size_t pad) {
  uint32_t len = static_cast<uint32_t>(1 + sizeof(header) + pad);
  auto at = out.size();
  out.resize(at + 4 + len);
  std::memcpy(&out[at], &len, 4);
  out[at + 4] = type;
  std::memcpy(&out[at + 5], &h, sizeof(header));
  std::memset(&out[at + 5 + sizeof(header)], 0x5a, pad);
}

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "wire_floor: %s\n", what.c_str());
  ERR_print_errors_fp(stderr);
  std::exit(2);
}

// -- one TLS connection on a non-blocking socket
// ---------------------------------------------------------------------------

struct conn {
  int fd = -1;
  SSL* ssl = nullptr;
  bool established = false;
  bool dirty = false;
  bool want_write = false;
  std::vector<uint8_t> in, out, unsent;
  uint32_t uid = UINT32_MAX;
  uint32_t in_flight = 0; // users: messages not yet DELIVERED
};

/// Reads what the socket has (one recv: OpenSSL's read-ahead takes all of
/// it) into c.in. False when the peer closed or TLS failed.
bool read_some(conn& c, std::vector<uint8_t>& buf) {
  for (;;) {
    int n = SSL_read(c.ssl, buf.data(), static_cast<int>(buf.size()));
    if (n > 0) {
      c.in.insert(c.in.end(), buf.begin(), buf.begin() + n);
      if (SSL_has_pending(c.ssl))
        continue;
      return true;
    }
    int e = SSL_get_error(c.ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
      return true;
    return false;
  }
}

/// Writes what a refused write left (c.unsent), then c.out as one record
/// (in 16 KiB pieces if larger). What the socket refuses waits in c.unsent
/// for EPOLLOUT, retried with the same bytes as OpenSSL requires.
void flush(conn& c, int ep) {
  c.dirty = false;
  for (;;) {
    if (c.unsent.empty()) {
      if (c.out.empty())
        break;
      c.unsent.swap(c.out); // c.out is now the empty one
    }
    int n =
      SSL_write(c.ssl, c.unsent.data(),
                static_cast<int>(std::min<size_t>(c.unsent.size(), 16384)));
    if (n > 0) {
      c.unsent.erase(c.unsent.begin(), c.unsent.begin() + n);
      continue;
    }
    int e = SSL_get_error(c.ssl, n);
    if (e == SSL_ERROR_WANT_WRITE) {
      if (!c.want_write) {
        c.want_write = true;
        epoll_event ev{EPOLLIN | EPOLLOUT, {.ptr = &c}};
        epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &ev);
      }
      return;
    }
    die("SSL_write failed");
  }
  if (c.want_write) {
    c.want_write = false;
    epoll_event ev{EPOLLIN, {.ptr = &c}};
    epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &ev);
  }
}

/// Puts `c` on the list of connections to flush at the end of the turn
/// (once).
void mark_dirty(conn* c, std::vector<conn*>& dirty) {
  if (!c->dirty) {
    c->dirty = true;
    dirty.push_back(c);
  }
}

/// Hands each whole frame of c.in to `fn(type, header)`.
template<class Fn>
void frames(conn& c, Fn fn) {
  size_t pos = 0;
  while (c.in.size() - pos >= 4) {
    uint32_t len;
    std::memcpy(&len, &c.in[pos], 4);
    if (c.in.size() - pos - 4 < len)
      break;
    header h;
    std::memcpy(&h, &c.in[pos + 5], sizeof(header));
    fn(c.in[pos + 4], h);
    pos += 4 + len;
  }
  c.in.erase(c.in.begin(), c.in.begin() + static_cast<long>(pos));
}

/// This process's read() and write() calls so far (/proc/self/io: syscr,
/// syscw). OpenSSL's socket BIO reads and writes sockets with read() and
/// write(), so these are its socket calls (and a few of /proc's).
std::pair<uint64_t, uint64_t> syscalls_rw() {
  std::ifstream f{"/proc/self/io"};
  std::string k;
  uint64_t v, r = 0, w = 0;
  while (f >> k >> v) {
    if (k == "syscr:")
      r = v;
    else if (k == "syscw:")
      w = v;
  }
  return {r, w};
}

double cpu_s(const rusage& u) {
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// -- the relay
// ---------------------------------------------------------------------------

/// Runs until the users' side closes every connection; writes its CPU
/// seconds and socket calls while the load ran to `report_fd`.
[[noreturn]] void relay(int listen_fd, SSL_CTX* ctx, uint32_t users,
                        int report_fd) {
  int ep = epoll_create1(0);
  epoll_event lev{EPOLLIN, {.ptr = nullptr}};
  epoll_ctl(ep, EPOLL_CTL_ADD, listen_fd, &lev);
  std::vector<std::unique_ptr<conn>> conns;
  std::vector<conn*> by_uid(users, nullptr), dirty;
  std::vector<uint8_t> buf(64 * 1024);
  std::vector<epoll_event> evs(512);
  size_t open = 0;
  bool any = false;
  double cpu0 = 0;
  std::pair<uint64_t, uint64_t> io0{};
  auto mark = [&](conn* c) { mark_dirty(c, dirty); };
  for (;;) {
    int n = epoll_wait(ep, evs.data(), static_cast<int>(evs.size()), -1);
    for (int i = 0; i < n; ++i) {
      auto* c = static_cast<conn*>(evs[i].data.ptr);
      if (c == nullptr) {
        for (;;) {
          int fd = accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK);
          if (fd < 0)
            break;
          int one = 1;
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          auto nc = std::make_unique<conn>();
          nc->fd = fd;
          nc->ssl = SSL_new(ctx);
          SSL_set_fd(nc->ssl, fd);
          SSL_set_accept_state(nc->ssl);
          epoll_event ev{EPOLLIN, {.ptr = nc.get()}};
          epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
          conns.push_back(std::move(nc));
          ++open;
          any = true;
        }
        continue;
      }
      if (evs[i].events & EPOLLOUT)
        flush(*c, ep);
      if (!(evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        continue;
      if (!c->established) {
        int r = SSL_do_handshake(c->ssl);
        if (r == 1) {
          c->established = true;
        } else {
          int e = SSL_get_error(c->ssl, r);
          if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
            die("server handshake failed");
          continue;
        }
      }
      if (!read_some(*c, buf)) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, nullptr);
        close(c->fd);
        c->fd = -1;
        --open;
        continue;
      }
      frames(*c, [&](uint8_t t, const header& h) {
        switch (t) {
        case hello:
          c->uid = h.from;
          by_uid[h.from] = c;
          if (h.id == 1) { // the load starts: count from here
            rusage u;
            getrusage(RUSAGE_SELF, &u);
            cpu0 = cpu_s(u);
            io0 = syscalls_rw();
          }
          break;
        case send_f: {
          put_frame(c->out, sent_f, h, status_pad);
          mark(c);
          if (auto* to = by_uid[h.to]) {
            put_frame(to->out, msg_f, h, send_pad + 16);
            mark(to);
          }
          break;
        }
        case ack_f:
          if (auto* to = by_uid[h.from]) {
            put_frame(to->out, delivered_f, h, status_pad);
            mark(to);
          }
          break;
        default:
          die("relay: unexpected frame");
        }
      });
    }
    for (auto* c : dirty)
      if (c->fd >= 0)
        flush(*c, ep);
    dirty.clear();
    if (any && open == 0)
      break;
  }
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  auto io = syscalls_rw();
  double rep[3] = {cpu_s(u) - cpu0, static_cast<double>(io.first - io0.first),
                   static_cast<double>(io.second - io0.second)};
  if (write(report_fd, rep, sizeof rep) != sizeof rep)
    std::_Exit(3);
  std::_Exit(0);
}

// -- the users
// ---------------------------------------------------------------------------

struct options {
  uint32_t users = 1000;
  uint32_t window = 4;
  double rate = 0; // > 0: open loop
  double duration_s = 10;
  bool keep_buffers = false; // clear SSL_MODE_RELEASE_BUFFERS
};

int connect_to(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    die("connect: " + std::string{std::strerror(errno)});
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

} // namespace

int main(int argc, char** argv) {
  options o;
  CLI::App app{"wire_floor: the chat scenario's frames over loopback TLS, "
               "with no work behind them"};
  app.add_option("--users", o.users, "connections (users)")
    ->check(CLI::Range(2u, 20000u));
  app.add_option("--window", o.window,
                 "closed loop: messages in flight per user");
  app.add_option("--rate", o.rate,
                 "open loop: messages per second (0: closed)");
  app.add_option("--duration", o.duration_s, "seconds of load");
  app.add_flag("--keep-buffers", o.keep_buffers,
               "clear SSL_MODE_RELEASE_BUFFERS, which Parley sets (idle "
               "connections hold ~16 KiB instead of ~48)");
  CLI11_PARSE(app, argc, argv);

  // Parley's own contexts (cipher order, modes), a throwaway certificate.
  char dir[] = "/tmp/wire_floor.XXXXXX";
  if (mkdtemp(dir) == nullptr)
    die("mkdtemp");
  std::string cert = std::string{dir} + "/cert.pem",
              key = std::string{dir} + "/key.pem";
  auto id = tls::generate_self_signed("localhost");
  if (!id)
    die(id.error().to_string());
  std::ofstream{cert} << id->cert_pem;
  std::ofstream{key} << id->key_pem;
  auto sctx = tls::context::server(cert, key);
  if (!sctx)
    die(sctx.error().to_string());
  tls::client_options co;
  co.ca_file = cert;
  auto cctx = tls::context::client(co);
  if (!cctx)
    die(cctx.error().to_string());
  SSL_CTX_set_read_ahead((*sctx)->native(), 1);
  SSL_CTX_set_read_ahead((*cctx)->native(), 1);
  if (o.keep_buffers) {
    SSL_CTX_clear_mode((*sctx)->native(), SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_clear_mode((*cctx)->native(), SSL_MODE_RELEASE_BUFFERS);
  }

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      listen(lfd, 4096) != 0)
    die("bind/listen");
  socklen_t alen = sizeof a;
  getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &alen);
  uint16_t port = ntohs(a.sin_port);

  int rep[2];
  if (pipe(rep) != 0)
    die("pipe");
  pid_t child = fork();
  if (child == 0) {
    close(rep[0]);
    relay(lfd, (*sctx)->native(), o.users, rep[1]);
  }
  close(rep[1]);
  close(lfd);

  // Connect and log in every user (blocking handshakes, then non-blocking).
  int ep = epoll_create1(0);
  std::vector<std::unique_ptr<conn>> us;
  for (uint32_t u = 0; u < o.users; ++u) {
    auto c = std::make_unique<conn>();
    c->fd = connect_to(port);
    c->ssl = SSL_new((*cctx)->native());
    SSL_set_fd(c->ssl, c->fd);
    if (SSL_connect(c->ssl) != 1)
      die("client handshake failed");
    c->established = true;
    c->uid = u;
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    epoll_event ev{EPOLLIN, {.ptr = c.get()}};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    header h;
    h.from = u;
    put_frame(c->out, hello, h, 0);
    flush(*c, ep);
    us.push_back(std::move(c));
  }

  std::vector<conn*> dirty;
  auto mark = [&](conn* c) { mark_dirty(c, dirty); };
  std::minstd_rand pick{7};
  uint64_t next_id = 1, delivered = 0, statuses = 0;
  sim::histogram latency;
  auto send_one = [&](conn& c, int64_t sched) {
    header h;
    h.from = c.uid;
    do
      h.to = static_cast<uint32_t>(pick() % o.users);
    while (h.to == c.uid);
    h.id = next_id++;
    h.sched_ns = sched;
    put_frame(c.out, send_f, h, send_pad);
    ++c.in_flight;
    mark(&c);
  };
  // A second hello from user 0 tells the relay that the load starts.
  {
    header h;
    h.from = 0;
    h.id = 1;
    put_frame(us[0]->out, hello, h, 0);
    mark(us[0].get());
  }
  rusage u0;
  getrusage(RUSAGE_SELF, &u0);
  auto io0 = syscalls_rw();
  int64_t t0 = now_ns();
  int64_t t_end = t0 + static_cast<int64_t>(o.duration_s * 1e9);
  bool closed = o.rate <= 0;
  if (closed)
    for (auto& c : us)
      while (c->in_flight < o.window)
        send_one(*c, now_ns());
  uint64_t due_i = 0;
  std::vector<uint8_t> buf(64 * 1024);
  std::vector<epoll_event> evs(512);
  bool loading = true;
  int64_t settle_end = 0;
  uint64_t delivered_in_window = 0;
  for (;;) {
    auto now = now_ns();
    if (loading && now >= t_end) {
      loading = false;
      settle_end = now + 5'000'000'000;
    }
    if (!loading && (statuses == next_id - 1 || now >= settle_end))
      break;
    if (loading && !closed) {
      auto due =
        static_cast<uint64_t>(static_cast<double>(now - t0) / 1e9 * o.rate);
      for (; due_i < due; ++due_i)
        send_one(
          *us[pick() % o.users],
          t0 + static_cast<int64_t>(static_cast<double>(due_i) / o.rate * 1e9));
    }
    for (auto* c : dirty)
      flush(*c, ep);
    dirty.clear();
    // The open loop wakes every 250 µs at most, as parley-sim's does.
    timespec wait{0, closed ? 100'000'000 : 250'000};
    int n = epoll_pwait2(ep, evs.data(), static_cast<int>(evs.size()), &wait,
                         nullptr);
    if (n < 0 && errno == ENOSYS) // a kernel before 5.11: 1 ms steps
      n = epoll_wait(ep, evs.data(), static_cast<int>(evs.size()),
                     closed ? 100 : 1);
    if (n < 0 && errno != EINTR)
      die("epoll: " + std::string{std::strerror(errno)});
    for (int i = 0; i < n; ++i) {
      auto* c = static_cast<conn*>(evs[i].data.ptr);
      if (evs[i].events & EPOLLOUT)
        flush(*c, ep);
      if (!(evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        continue;
      if (!read_some(*c, buf))
        die("the relay closed a connection");
      frames(*c, [&](uint8_t t, const header& h) {
        switch (t) {
        case sent_f:
          break;
        case msg_f: {
          auto at = now_ns();
          latency.record(static_cast<uint64_t>(at - h.sched_ns));
          ++delivered;
          if (at <= t_end)
            ++delivered_in_window;
          put_frame(c->out, ack_f, h, ack_pad);
          mark(c);
          break;
        }
        case delivered_f: {
          ++statuses;
          auto& s = *us[h.from];
          --s.in_flight;
          if (closed && loading)
            while (s.in_flight < o.window)
              send_one(s, now_ns());
          break;
        }
        default:
          die("users: unexpected frame");
        }
      });
    }
  }
  rusage u1;
  getrusage(RUSAGE_SELF, &u1);
  auto io1 = syscalls_rw();
  for (auto& c : us)
    close(c->fd);
  double relay_rep[3] = {0, 0, 0};
  if (read(rep[0], relay_rep, sizeof relay_rep) != sizeof relay_rep)
    die("the relay did not report");
  waitpid(child, nullptr, 0);
  std::remove(cert.c_str());
  std::remove(key.c_str());
  rmdir(dir);

  auto msgs = static_cast<double>(std::max<uint64_t>(delivered, 1));
  auto q = [&](double p) {
    return static_cast<double>(latency.quantile(p)) / 1e6;
  };
  nlohmann::json j;
  j["users"] = o.users;
  j["window"] = closed ? o.window : 0;
  j["rate"] = o.rate;
  j["duration_s"] = o.duration_s;
  j["sent"] = next_id - 1;
  j["delivered"] = delivered;
  j["delivered_per_s"] =
    static_cast<double>(delivered_in_window) / o.duration_s;
  j["statuses_back"] = statuses;
  j["latency_ms"] = {{"p50", q(0.5)},
                     {"p90", q(0.9)},
                     {"p99", q(0.99)},
                     {"p999", q(0.999)},
                     {"max", q(1.0)}};
  j["relay_cpu_us_per_msg"] = relay_rep[0] * 1e6 / msgs;
  j["users_cpu_us_per_msg"] = (cpu_s(u1) - cpu_s(u0)) * 1e6 / msgs;
  j["relay_reads_per_msg"] = relay_rep[1] / msgs;
  j["relay_writes_per_msg"] = relay_rep[2] / msgs;
  j["users_reads_per_msg"] = static_cast<double>(io1.first - io0.first) / msgs;
  j["users_writes_per_msg"] =
    static_cast<double>(io1.second - io0.second) / msgs;
  std::cout << j.dump(2) << "\n";
  return statuses == next_id - 1 ? 0 : 1;
}
