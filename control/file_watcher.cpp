#include "control/file_watcher.hpp"

#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

namespace nplb {

namespace fs = std::filesystem;

FileWatcher::FileWatcher() : fd_(inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) {
  if (fd_ < 0) throw std::runtime_error(std::string("inotify_init1: ") + std::strerror(errno));
}

FileWatcher::~FileWatcher() {
  if (fd_ >= 0) close(fd_);
}

void FileWatcher::watch(const std::vector<std::string>& paths) {
  for (const Watch& w : watches_) inotify_rm_watch(fd_, w.wd);
  watches_.clear();
  constexpr uint32_t kMask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ATTRIB;
  for (const std::string& path : paths) {
    std::error_code ec;
    bool is_dir = fs::is_directory(path, ec);
    fs::path folder_path = is_dir ? fs::path(path) : fs::path(path).parent_path();
    if (folder_path.empty()) folder_path = ".";
    const std::string folder = folder_path.string();
    std::string name = is_dir ? "" : fs::path(path).filename().string();
    int wd = inotify_add_watch(fd_, folder.c_str(), kMask);
    if (wd < 0) continue;  // a missing folder: the loader reports the missing path
    Watch* existing = nullptr;
    for (Watch& w : watches_)
      if (w.wd == wd) existing = &w;
    if (!existing) {
      watches_.push_back(Watch{wd, folder, {}});
      existing = &watches_.back();
      if (!is_dir) existing->names.push_back(name);
    } else if (is_dir) {
      existing->names.clear();  // the whole folder now
    } else if (!existing->names.empty()) {
      existing->names.push_back(name);
    }
  }
}

bool FileWatcher::relevant(const Watch& w, const std::string& name) const {
  if (w.names.empty()) {
    auto ext = fs::path(name).extension().string();
    return ext == ".yaml" || ext == ".yml" || ext == ".json";
  }
  for (const std::string& n : w.names)
    if (n == name) return true;
  return false;
}

bool FileWatcher::changed(std::chrono::milliseconds settle) {
  alignas(inotify_event) char buf[16384];
  for (;;) {
    ssize_t n = read(fd_, buf, sizeof buf);
    if (n <= 0) break;
    for (char* p = buf; p < buf + n;) {
      auto* e = reinterpret_cast<inotify_event*>(p);
      p += sizeof(inotify_event) + e->len;
      std::string name = e->len ? e->name : "";
      for (const Watch& w : watches_)
        if (w.wd == e->wd && relevant(w, name)) {
          pending_ = true;
          last_event_ = std::chrono::steady_clock::now();
        }
    }
  }
  if (pending_ && std::chrono::steady_clock::now() - last_event_ >= settle) {
    pending_ = false;
    return true;
  }
  return false;
}

}  // namespace nplb
