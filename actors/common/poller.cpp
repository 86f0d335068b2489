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

struct poller::epoll_buffer {
  epoll_event evs[max_events];
};

result<std::unique_ptr<poller>> poller::make() {
  std::unique_ptr<poller> p{new poller};
  p->evs_ = std::make_unique<epoll_buffer>();
  p->ready_.reserve(max_events);
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
  return p;
}

result<std::unique_ptr<poller>> poller::create() {
  return make();
}

result<std::unique_ptr<poller>> poller::start(const char* thread_name) {
  auto p = make();
  if (!p)
    return p;
  auto* raw = p->get();
  std::string name = thread_name;
  (*p)->thread_ = std::thread{[raw, name] {
    ::pthread_setname_np(::pthread_self(), name.substr(0, 15).c_str());
    raw->run();
  }};
  return p;
}

void poller::wake() {
  uint64_t one = 1;
  if (::write(wake_, &one, sizeof(one)) < 0) {
    // nop: the counter is full, so a wake-up is pending anyway
  }
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

void poller::collect(int n) {
  ready_.clear();
  std::lock_guard<std::mutex> guard{mtx_};
  for (int i = 0; i < n; ++i) {
    auto& e = evs_->evs[i];
    auto token = e.data.u64;
    if (token == wake_token) {
      uint64_t count = 0;
      if (::read(wake_, &count, sizeof(count)) < 0) {
        // nop: drained by an earlier read
      }
      continue;
    }
    auto index = static_cast<uint32_t>(token);
    auto generation = static_cast<uint32_t>(token >> 32);
    if (index >= slots_.size() || slots_[index].generation != generation ||
        !slots_[index].h)
      continue;
    uint32_t bits = 0;
    if (e.events & EPOLLIN)
      bits |= io_event::readable;
    if (e.events & EPOLLOUT)
      bits |= io_event::writable;
    if (e.events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
      bits |= io_event::hangup | io_event::readable;
    ready_.emplace_back(slots_[index].h, bits);
  }
}

size_t poller::poll(int timeout_ms, void (*woke)(void*), void* arg) {
  int n;
  do {
    n = ::epoll_wait(epfd_, evs_->evs, max_events, timeout_ms);
  } while (n < 0 && errno == EINTR);
  if (woke != nullptr)
    woke(arg);
  if (n <= 0)
    return 0;
  collect(n);
  for (auto& [h, bits] : ready_)
    (*h)(bits);
  auto ran = ready_.size();
  ready_.clear(); // drops the handlers' references now, not at the next poll
  return ran;
}

void poller::run() {
  while (!stop_) {
    int n = ::epoll_wait(epfd_, evs_->evs, max_events, -1);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return;
    }
    collect(n);
    for (auto& [h, bits] : ready_)
      (*h)(bits);
    ready_.clear();
  }
}

} // namespace parley::net
