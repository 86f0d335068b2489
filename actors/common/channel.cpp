#include "actors/common/channel.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace parley::net {

namespace {

std::string peer_of(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0)
    return "?";
  char host[INET6_ADDRSTRLEN] = "?";
  uint16_t port = 0;
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
    port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
    port = ntohs(a->sin6_port);
  }
  return std::string{host} + ":" + std::to_string(port);
}

} // namespace

result<std::unique_ptr<channel>> channel::open(poller& p, int fd,
                                               std::function<void()> notify) {
  int flags = ::fcntl(fd, F_GETFL, 0);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    ::close(fd);
    return status{status_code::io_error,
                  std::string{"fcntl(O_NONBLOCK): "} + std::strerror(errno)};
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  std::unique_ptr<channel> ch{new channel};
  ch->poller_ = &p;
  ch->fd_ = fd;
  ch->peer_ = peer_of(fd);
  ch->sig_ = std::make_shared<signal>();
  ch->sig_->notify = std::move(notify);
  auto token = p.add(fd, [sig = ch->sig_](uint32_t bits) {
    sig->events.fetch_or(bits, std::memory_order_acq_rel);
    if (!sig->notified.exchange(true, std::memory_order_acq_rel))
      sig->notify();
  });
  if (!token) {
    ch->poller_ = nullptr;
    return token.error();
  }
  ch->token_ = *token;
  return ch;
}

channel::~channel() {
  // Deregistered before the close, so that the fd's next owner never gets
  // our events. A dispatch already under way only touches sig_.
  if (poller_ != nullptr)
    poller_->remove(token_);
  if (fd_ >= 0) {
    // Input nobody will read is drained first (up to 1 MiB): a close with
    // unread input sends RST instead of FIN, and the peer's kernel may drop
    // what we wrote last, such as the goodbye that says why we close.
    char sink[16384];
    for (int i = 0; i < 64; ++i)
      if (::recv(fd_, sink, sizeof(sink), MSG_DONTWAIT) <= 0)
        break;
    ::close(fd_);
  }
}

uint32_t channel::take_events() {
  sig_->notified.store(false, std::memory_order_release);
  auto ev = sig_->events.exchange(0, std::memory_order_acq_rel);
  if ((ev & io_event::hangup) != 0)
    hangup_ = true;
  return ev;
}

channel::read_result channel::read_some(uint8_t* buf, size_t max, size_t& n) {
  n = 0;
  for (;;) {
    auto r = ::recv(fd_, buf, max, 0);
    if (r > 0) {
      n = static_cast<size_t>(r);
      // A short read emptied the socket: edge-triggered epoll reports the
      // next bytes as a new event. Not so the end of the stream once the
      // hangup was reported: the peer's FIN (or a reset) that came with
      // these bytes raises no event again, so the caller reads on until
      // recv says so (else a peer that wrote and closed at once, as a
      // killed server does, would never be seen to go).
      return n < max && !hangup_ ? read_result::drained : read_result::data;
    }
    if (r == 0)
      return read_result::closed;
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return read_result::drained;
    return read_result::failed;
  }
}

bool channel::write(const uint8_t* data, size_t n) {
  if (n == 0)
    return true;
  if (pending() == 0) {
    pending_.clear();
    pending_off_ = 0;
    while (n > 0) {
      auto w = ::send(fd_, data, n, MSG_NOSIGNAL);
      if (w > 0) {
        data += w;
        n -= static_cast<size_t>(w);
        continue;
      }
      if (w < 0 && errno == EINTR)
        continue;
      if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        break;
      return false;
    }
    if (n == 0)
      return true;
  }
  pending_.insert(pending_.end(), data, data + n);
  return true;
}

bool channel::flush() {
  while (pending() > 0) {
    auto w =
      ::send(fd_, pending_.data() + pending_off_, pending(), MSG_NOSIGNAL);
    if (w > 0) {
      pending_off_ += static_cast<size_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return true;
    return false;
  }
  pending_.clear();
  pending_off_ = 0;
  return true;
}

} // namespace parley::net
