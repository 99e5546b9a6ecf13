// Watches the configuration file and the manifests it names (inotify), so an
// edit triggers a reload. Editors replace files by rename, so the folders
// holding them are watched, not the files. Changes are debounced: a burst of
// writes (a `kubectl get -o yaml > file` in progress) gives one reload after
// the writes settle.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace nplb {

class FileWatcher {
 public:
  FileWatcher();
  ~FileWatcher();
  FileWatcher(const FileWatcher&) = delete;
  FileWatcher& operator=(const FileWatcher&) = delete;

  // Replaces the watched set: files (their folder is watched, events
  // filtered by name) and folders (any *.yaml/*.yml/*.json inside).
  void watch(const std::vector<std::string>& paths);

  // Reads pending events without blocking; true once changes have settled
  // for `settle` since the last one.
  bool changed(std::chrono::milliseconds settle = std::chrono::milliseconds(200));
  int fd() const { return fd_; }

 private:
  struct Watch {
    int wd;
    std::string folder;
    std::vector<std::string> names;  // empty: every manifest file in the folder
  };
  bool relevant(const Watch& w, const std::string& name) const;
  int fd_ = -1;
  std::vector<Watch> watches_;
  bool pending_ = false;
  std::chrono::steady_clock::time_point last_event_;
};

}  // namespace nplb
