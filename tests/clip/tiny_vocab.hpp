#pragma once
// A small hand-made CLIP vocabulary and writers for both tokenizer file formats, shared by the
// tokenizer tests and the tests that need a complete CLIP directory.
#include <zlib.h>

#include <algorithm>
#include <cstddef>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "clprompt/clip/clip_tokenizer.hpp"

namespace clprompt::test {

// Merges by rank; the symbols are bytes_to_unicode code points (ASCII letters map to
// themselves, é's bytes C3 A9 to "Ã" "©"). Ids: 512 + rank, then sot 529, eot 530.
inline const std::vector<std::string> kTinyMerges = {
    "h e",         // 512 he
    "l l",         // 513 ll: inside a word only; "l l</w>" is a different pair
    "he ll",       // 514 hell
    "hell o</w>",  // 515 hello</w>
    "b c</w>",     // 516 bc</w>: ranks before "a b", so "abc" -> a bc</w>, not ab c</w>
    "a b",         // 517 ab
    "d o",         // 518 do
    "do n</w>",    // 519 don</w>
    "' t</w>",     // 520 't</w>
    "i t</w>",     // 521 it</w>
    "w e</w>",     // 522 we</w>
    "! !",         // 523 !!
    "!! !!",       // 524 !!!!
    "Ã ©</w>",     // 525 é</w>
    "c a",         // 526 ca
    "ca f",        // 527 caf
    "caf Ã©</w>",  // 528 café</w>
};
/// Ids of the vocabulary built from kTinyMerges: 2 x 256 byte symbols, the merges, sot, eot.
inline constexpr int64_t kTinySot = 529, kTinyEot = 530, kTinyVocabSize = 531;

/// merges.txt / bpe_simple_vocab text: a header line, then one merge per line.
inline std::string merges_text(const std::vector<std::string>& merges) {
  std::string text = "#version: 0.2\n";
  for (const auto& m : merges) text += m + "\n";
  return text;
}

inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  if (!out) throw std::runtime_error("cannot write " + path);
}

inline void write_gzip(const std::string& path, const std::string& text) {
  gzFile f = gzopen(path.c_str(), "wb");
  if (f == nullptr) throw std::runtime_error("cannot open " + path);
  const bool written = gzwrite(f, text.data(), static_cast<unsigned>(text.size())) == static_cast<int>(text.size());
  if (gzclose(f) != Z_OK || !written) throw std::runtime_error("cannot write " + path);
}

/// CLIP's vocabulary for `merges`, in id order (the layout from_openai_bpe builds).
inline std::vector<std::string> clip_vocab(const std::vector<std::string>& merges) {
  std::vector<char32_t> symbols = clprompt::detail::bytes_to_unicode();
  std::sort(symbols.begin(), symbols.end());
  std::vector<std::string> vocab;
  for (char32_t cp : symbols) clprompt::detail::utf8_append(vocab.emplace_back(), cp);
  for (std::size_t i = 0; i < 256; ++i) vocab.push_back(vocab[i] + "</w>");
  for (const auto& m : merges) vocab.push_back(m.substr(0, m.find(' ')) + m.substr(m.find(' ') + 1));
  vocab.push_back("<|startoftext|>");
  vocab.push_back("<|endoftext|>");
  return vocab;
}

/// vocab.json: token -> id, ids in the order of `vocab`.
inline void write_vocab_json(const std::string& path, const std::vector<std::string>& vocab) {
  nlohmann::json json = nlohmann::json::object();
  for (std::size_t i = 0; i < vocab.size(); ++i) json[vocab[i]] = i;
  write_text(path, json.dump());
}

/// Hugging Face tokenizer files of the tiny vocabulary: <dir>/vocab.json and <dir>/merges.txt.
inline void write_tiny_hf_tokenizer(const std::string& dir) {
  write_vocab_json(dir + "/vocab.json", clip_vocab(kTinyMerges));
  write_text(dir + "/merges.txt", merges_text(kTinyMerges));
}

/// OpenAI's tokenizer file of the tiny vocabulary, gzipped (bpe_simple_vocab_16e6.txt.gz layout).
inline void write_tiny_openai_bpe(const std::string& path) { write_gzip(path, merges_text(kTinyMerges)); }

}  // namespace clprompt::test
