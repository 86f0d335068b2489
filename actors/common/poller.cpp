#include "actors/common/poller.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <pthread.h>

#include <cerrno>
#include <cstring>

namespace parley::net {

namespace {

constexpr uint64_t wake_token = ~uint64_t{0};

uint64_t make_token(uint32_t index, uint32_t generation) {
  return (uint64_t{generation} << 32) | index;
}

} // namespace

result<std::unique_ptr<poller>> poller::start(const char* thread_name) {
  std::unique_ptr<poller> p{new poller};
  p->epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (p->epfd_ < 0)
    return status{status_code::io_error,
                  std::string{"epoll_create1: "} + std::strerror(errno)};
  p->wake_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (p->wake_ < 0)
    return status{status_code::io_error,
                  std::string{"eventfd: "} + std::strerror(errno)};
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = wake_token;
  ::epoll_ctl(p->epfd_, EPOLL_CTL_ADD, p->wake_, &ev);
  auto* raw = p.get();
  std::string name = thread_name;
  p->thread_ = std::thread{[raw, name] {
    ::pthread_setname_np(::pthread_self(), name.substr(0, 15).c_str());
    raw->run();
  }};
  return p;
}

poller::~poller() {
  if (thread_.joinable()) {
    stop_ = true;
    uint64_t one = 1;
    if (::write(wake_, &one, sizeof(one)) < 0) {
      // nop: the thread is stopping anyway
    }
    thread_.join();
  }
  if (wake_ >= 0)
    ::close(wake_);
  if (epfd_ >= 0)
    ::close(epfd_);
}

result<uint64_t> poller::add(int fd, handler h) {
  uint64_t token;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    uint32_t index;
    if (!free_.empty()) {
      index = free_.back();
      free_.pop_back();
    } else {
      index = static_cast<uint32_t>(slots_.size());
      slots_.emplace_back();
    }
    auto& s = slots_[index];
    s.fd = fd;
    s.h = std::make_shared<handler>(std::move(h));
    token = make_token(index, s.generation);
  }
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.u64 = token;
  if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    auto err = errno;
    remove(token);
    return status{status_code::io_error,
                  std::string{"epoll_ctl(ADD): "} + std::strerror(err)};
  }
  return token;
}

void poller::remove(uint64_t token) {
  auto index = static_cast<uint32_t>(token);
  auto generation = static_cast<uint32_t>(token >> 32);
  std::lock_guard<std::mutex> guard{mtx_};
  if (index >= slots_.size() || slots_[index].generation != generation ||
      slots_[index].fd < 0)
    return;
  auto& s = slots_[index];
  ::epoll_ctl(epfd_, EPOLL_CTL_DEL, s.fd, nullptr);
  s.fd = -1;
  s.h.reset();
  ++s.generation;
  free_.push_back(index);
}

void poller::run() {
  constexpr int max_events = 256;
  epoll_event evs[max_events];
  std::vector<std::pair<std::shared_ptr<handler>, uint32_t>> ready;
  ready.reserve(max_events);
  while (!stop_) {
    int n = ::epoll_wait(epfd_, evs, max_events, -1);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return;
    }
    ready.clear();
    {
      std::lock_guard<std::mutex> guard{mtx_};
      for (int i = 0; i < n; ++i) {
        auto token = evs[i].data.u64;
        if (token == wake_token)
          continue;
        auto index = static_cast<uint32_t>(token);
        auto generation = static_cast<uint32_t>(token >> 32);
        if (index >= slots_.size() || slots_[index].generation != generation ||
            !slots_[index].h)
          continue;
        uint32_t bits = 0;
        auto e = evs[i].events;
        if (e & EPOLLIN)
          bits |= io_event::readable;
        if (e & EPOLLOUT)
          bits |= io_event::writable;
        if (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
          bits |= io_event::hangup | io_event::readable;
        ready.emplace_back(slots_[index].h, bits);
      }
    }
    for (auto& [h, bits] : ready)
      (*h)(bits);
  }
}

} // namespace parley::net
