#include "actors/tls/tls_socket.hpp"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>

namespace parley::tls {

namespace {

using clock_type = std::chrono::steady_clock;

int remaining_ms(clock_type::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - clock_type::now())
                .count();
  return left > 0 ? static_cast<int>(left) : 0;
}

/// Non-blocking connect bounded by `timeout`; returns a blocking socket.
result<int> connect_tcp(const std::string& host, uint16_t port,
                        std::chrono::milliseconds timeout) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  auto port_str = std::to_string(port);
  if (int rc = getaddrinfo(host.c_str(), port_str.c_str(), &hints, &res);
      rc != 0)
    return status{status_code::unavailable,
                  "cannot resolve '" + host + "': " + gai_strerror(rc)};
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard{res, freeaddrinfo};
  auto deadline = clock_type::now() + timeout;
  std::string last_error = "no address";
  for (auto* ai = res; ai != nullptr; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      last_error = std::strerror(errno);
      continue;
    }
    int flags = ::fcntl(fd, F_GETFL);
    ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    int rc = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      rc = ::poll(&p, 1, remaining_ms(deadline));
      if (rc == 1) {
        int err = 0;
        socklen_t len = sizeof(err);
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        rc = err == 0 ? 0 : -1;
        errno = err;
      } else {
        errno = rc == 0 || errno == 0 ? ETIMEDOUT : errno;
        rc = -1;
      }
    }
    if (rc == 0) {
      ::fcntl(fd, F_SETFL, flags);
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      return fd;
    }
    last_error = std::strerror(errno);
    ::close(fd);
  }
  return status{status_code::unavailable,
                "cannot connect to " + host + ":" + port_str + ": " +
                  last_error +
                  ": is parleyd running there? ('scripts/run' starts one)"};
}

} // namespace

tls_socket::tls_socket(int fd, std::shared_ptr<context> ctx,
                       const std::string& sni)
  : fd_(fd), tls_(std::move(ctx), sni),
    parser_(codec::max_frame_body_protocol) {
  // nop
}

tls_socket::~tls_socket() {
  if (fd_ >= 0)
    ::close(fd_);
}

result<std::unique_ptr<tls_socket>>
tls_socket::connect(const std::string& host, uint16_t port,
                    std::shared_ptr<context> ctx,
                    std::chrono::milliseconds timeout) {
  auto fd = connect_tcp(host, port, timeout);
  if (!fd)
    return fd.error();
  std::unique_ptr<tls_socket> s{new tls_socket(*fd, std::move(ctx), host)};
  bytes out;
  if (auto st = s->tls_.start(out); !st)
    return st;
  if (auto st = s->write_raw(out); !st)
    return st;
  auto deadline = clock_type::now() + timeout;
  while (!s->tls_.established()) {
    if (auto st = s->pump(std::chrono::milliseconds(remaining_ms(deadline)));
        !st)
      return st.code() == status_code::timeout
               ? status{status_code::timeout,
                        "the TLS handshake with " + host + ":" +
                          std::to_string(port) +
                          " did not finish in time: is it a parleyd "
                          "port?"}
               : st;
  }
  return s;
}

status tls_socket::write_raw(const bytes& b) {
  size_t off = 0;
  while (off < b.size()) {
    auto n = ::send(fd_, b.data() + off, b.size() - off, MSG_NOSIGNAL);
    if (n <= 0) {
      closed_ = true;
      return status{status_code::unavailable,
                    std::string{"the connection broke: "} +
                      std::strerror(errno)};
    }
    off += static_cast<size_t>(n);
  }
  return {};
}

status tls_socket::send_plain(const uint8_t* data, size_t n) {
  bytes out;
  if (auto st = tls_.send(data, n, out); !st)
    return st;
  return write_raw(out);
}

status tls_socket::pump(std::chrono::milliseconds timeout) {
  if (closed_)
    return error_.ok() ? status{status_code::unavailable,
                                "the server closed the connection"}
                       : error_;
  pollfd p{fd_, POLLIN, 0};
  int rc = ::poll(&p, 1, static_cast<int>(timeout.count()));
  if (rc == 0)
    return status{status_code::timeout, "no answer from the server in time"};
  if (rc < 0)
    return status{status_code::io_error, std::strerror(errno)};
  uint8_t buf[16384];
  auto n = ::recv(fd_, buf, sizeof(buf), 0);
  if (n <= 0) {
    closed_ = true;
    return status{status_code::unavailable, "the server closed the connection"};
  }
  bytes plain, out;
  auto st = tls_.receive(buf, static_cast<size_t>(n), plain, out);
  if (!out.empty())
    write_raw(out);
  if (!st) {
    closed_ = true;
    error_ = st;
  }
  auto e =
    parser_.feed(plain.data(), plain.size(),
                 [&](codec::frame_type t, const uint8_t* body, size_t len) {
                   codec::frame f;
                   auto de = codec::decode(t, body, len, f);
                   if (de != codec::errc::ok) {
                     error_ = codec::to_status(de, "from the server");
                     return false;
                   }
                   frames_.push_back(std::move(f));
                   return true;
                 });
  if (e != codec::errc::ok) {
    closed_ = true;
    if (error_.ok())
      error_ = codec::to_status(e, "from the server");
  }
  // Frames that arrived before a close are still delivered.
  if (!st && frames_.empty())
    return st;
  return {};
}

result<codec::frame> tls_socket::receive(std::chrono::milliseconds timeout) {
  auto deadline = clock_type::now() + timeout;
  while (frames_.empty()) {
    if (auto st = pump(std::chrono::milliseconds(remaining_ms(deadline))); !st)
      return st;
  }
  auto f = std::move(frames_.front());
  frames_.pop_front();
  return f;
}

} // namespace parley::tls
