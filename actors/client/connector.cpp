#include "actors/client/connector.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace parley::net {

connector::connector() {
  if (::pipe2(wake_, O_CLOEXEC | O_NONBLOCK) != 0)
    wake_[0] = wake_[1] = -1;
  thread_ = std::thread{[this] { run(); }};
}

connector::~connector() {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    stop_ = true;
  }
  char c = 0;
  if (::write(wake_[1], &c, 1) < 0) {
    // nop: the thread also polls with a timeout
  }
  thread_.join();
  for (int fd : wake_)
    if (fd >= 0)
      ::close(fd);
}

void connector::connect(std::string host, uint16_t port,
                        std::chrono::milliseconds timeout, callback done) {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    queue_.push_back(request{std::move(host), port,
                             std::chrono::steady_clock::now() + timeout,
                             std::move(done)});
  }
  char c = 0;
  if (::write(wake_[1], &c, 1) < 0) {
    // nop: a full pipe means a wake-up is pending anyway
  }
}

void connector::begin(request& r) {
  auto where = r.host + ":" + std::to_string(r.port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  auto port = std::to_string(r.port);
  if (int rc = getaddrinfo(r.host.c_str(), port.c_str(), &hints, &res);
      rc != 0) {
    r.done(-1, status{status_code::unavailable,
                      "cannot resolve '" + r.host + "': " + gai_strerror(rc)});
    return;
  }
  int fd =
    ::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    freeaddrinfo(res);
    r.done(-1, status{status_code::io_error,
                      std::string{"socket(): "} + std::strerror(errno)});
    return;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  int rc = ::connect(fd, res->ai_addr, res->ai_addrlen);
  int err = errno;
  freeaddrinfo(res);
  if (rc == 0) {
    r.done(fd, {});
    return;
  }
  if (err != EINPROGRESS) {
    ::close(fd);
    r.done(-1, status{status_code::unavailable,
                      "cannot connect to " + where + ": " + std::strerror(err) +
                        ": is parleyd running there?"});
    return;
  }
  pending_.push_back(pending{fd, where, r.deadline, std::move(r.done)});
}

void connector::run() {
  std::vector<pollfd> fds;
  for (;;) {
    std::deque<request> fresh;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      if (stop_)
        break;
      fresh.swap(queue_);
    }
    for (auto& r : fresh)
      begin(r);
    fds.clear();
    fds.push_back(pollfd{wake_[0], POLLIN, 0});
    for (auto& p : pending_)
      fds.push_back(pollfd{p.fd, POLLOUT, 0});
    auto now = std::chrono::steady_clock::now();
    int wait_ms = 1000;
    for (auto& p : pending_) {
      auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(p.deadline - now)
          .count();
      wait_ms =
        std::max<int>(0, std::min<int>(wait_ms, static_cast<int>(left)));
    }
    ::poll(fds.data(), fds.size(), wait_ms);
    if (fds[0].revents & POLLIN) {
      char buf[64];
      while (::read(wake_[0], buf, sizeof(buf)) > 0) {
        // nop: drain
      }
    }
    now = std::chrono::steady_clock::now();
    std::vector<pending> still;
    for (size_t i = 0; i < pending_.size(); ++i) {
      auto& p = pending_[i];
      if (fds[i + 1].revents != 0) {
        int err = 0;
        socklen_t len = sizeof(err);
        ::getsockopt(p.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err == 0) {
          p.done(p.fd, {});
        } else {
          ::close(p.fd);
          p.done(-1,
                 status{status_code::unavailable,
                        "cannot connect to " + p.where + ": " +
                          std::strerror(err) + ": is parleyd running there?"});
        }
      } else if (now >= p.deadline) {
        ::close(p.fd);
        p.done(-1, status{status_code::timeout,
                          "connecting to " + p.where + " timed out"});
      } else {
        still.push_back(std::move(p));
      }
    }
    pending_.swap(still);
  }
  for (auto& p : pending_) {
    ::close(p.fd);
    p.done(-1, status{status_code::cancelled, "the runtime is stopping"});
  }
  std::deque<request> left;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    left.swap(queue_);
  }
  for (auto& r : left)
    r.done(-1, status{status_code::cancelled, "the runtime is stopping"});
}

} // namespace parley::net
