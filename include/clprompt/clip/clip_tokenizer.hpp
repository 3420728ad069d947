#pragma once
// CLIP's byte-level BPE tokenizer (OpenAI clip/simple_tokenizer.py, which Hugging Face's
// CLIPTokenizer mirrors). Plain C++: no tensors are involved.
//
// encode(text) = for each pre-token of clean(text): BPE over its UTF-8 bytes -> ids, where
//   clean   = basic_clean (ftfy + HTML unescape), whitespace_clean, lower-case;
//   pre-tokens come from CLIP's regex
//     <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
//   and BPE works on bytes mapped to printable code points (bytes_to_unicode), the last one
//   of each word suffixed "</w>".
//
// Exact: the byte mapping, the regex's alternation order and greediness, the BPE merge loop,
// the vocabulary layout of both file formats, padding/truncation, decode's UTF-8 repair.
// Approximated, so text outside these cases may tokenize differently from Python:
//  - \p{L} / \p{N}: a compact range table, checked code point by code point against Python's
//    `regex` module: letters are exact in Latin (ASCII through Latin Extended-B, IPA, Latin
//    Extended Additional), Greek (with Extended), Cyrillic, Armenian, Hebrew, Arabic,
//    Devanagari, Thai, Georgian, Hangul, kana, Bopomofo, CJK ideographs (BMP; the
//    supplementary planes by block), half/fullwidth forms; numbers are exact for ASCII and
//    Latin-1 and cover the Arabic, Devanagari, Bengali, Thai, fullwidth digits and the
//    common numeral symbols. Letters of other scripts (Tamil, Ethiopic, ...) count as
//    punctuation. \s is exact (Unicode White_Space, as `regex`).
//  - lower-casing (Python's str.lower()): exact for ASCII, Latin-1, Latin Extended-A, Latin
//    Extended Additional, basic Greek and Cyrillic, Armenian, fullwidth Latin, and İ; the
//    regular runs of Latin Extended-B; final sigma when Σ ends a word of letters. Not lowered:
//    irregular Latin Extended-B, archaic Greek, Greek Extended, Georgian, Roman numerals...
//  - ftfy.fix_text: only its character-level fixes are reproduced (HTML entities, C1
//    controls as Windows-1252, Latin ligatures, fullwidth ASCII, curly quotes, control
//    characters, run until stable as ftfy does); mojibake repair, terminal-escape removal
//    and NFC normalization are not (decomposed accents stay decomposed).
//  - HTML entities: numeric ones exactly as Python's html.unescape; named ones only amp lt
//    gt quot apos nbsp (and AMP LT GT QUOT), others are kept as written.
// Hugging Face's CLIPTokenizer (with ftfy installed) differs only in skipping CLIP's two extra
// html.unescape rounds; ids from its vocab.json/merges.txt match OpenAI's file.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "clprompt/core/error.hpp"

namespace clprompt {

/// A tokenizer file that cannot be read or parsed ("<path>: <what>", path() set), or text/ids
/// the tokenizer cannot handle (path() empty). A clprompt::Error like every other error.
class TokenizerError : public Error {
 public:
  explicit TokenizerError(const std::string& what) : Error(what) {}
  TokenizerError(std::string path, const std::string& what) : Error(path + ": " + what), path_(std::move(path)) {}
  /// The offending file, empty when the error is not about a file.
  const std::string& path() const noexcept { return path_; }

 private:
  std::string path_;
};

struct ClipTokenizerOptions {
  int64_t context_length = 77;  // every CLIP model's text context
  bool truncate = true;         // cut long texts (keeping <|endoftext|> last) instead of throwing
};

/// The number of merges CLIP uses (48894, written as simple_tokenizer.py slices them); with the
/// 2 x 256 byte symbols and 2 special tokens that makes its 49408-entry vocabulary.
inline constexpr std::size_t kClipMerges = 49152 - 256 - 2;

/// Tokenizer over one vocabulary. Copies share the vocabulary and the per-word BPE cache;
/// every member is safe to call from several threads at once (the cache takes a mutex).
class ClipTokenizer {
 public:
  /// Hugging Face files: vocab.json (token -> id) and merges.txt (a "#version" header line,
  /// then "a b" per line; at most `max_merges` are used, as CLIPTokenizer does). Every byte
  /// symbol, its "</w>" form, each merge's result and both special tokens must have an id.
  static ClipTokenizer from_hf_files(const std::string& vocab_json, const std::string& merges_txt,
                                     ClipTokenizerOptions options = {}, std::size_t max_merges = kClipMerges);

  /// OpenAI's bpe_simple_vocab_16e6.txt.gz (gzipped or plain): a header line then merges, of
  /// which the first `max_merges` are used (all when there are fewer). Ids follow CLIP: the
  /// 256 byte symbols, the same with "</w>", one per merge, <|startoftext|>, <|endoftext|>.
  static ClipTokenizer from_openai_bpe(const std::string& bpe_path, ClipTokenizerOptions options = {},
                                       std::size_t max_merges = kClipMerges);

  /// BPE ids of `text` (UTF-8; invalid bytes read as U+FFFD), without start/end tokens.
  std::vector<int64_t> encode(std::string_view text) const;

  /// The model input: <|startoftext|>, encode(text), <|endoftext|>, then zeros up to
  /// context_length. A longer sequence is cut to context_length with <|endoftext|> as its
  /// last id (clip.tokenize(truncate=True)), or throws TokenizerError when !truncate.
  /// CLIP's text encoder pools the features at <|endoftext|>; OpenAI's code finds it with
  /// argmax over the ids, which works because it is the largest id in the vocabulary.
  std::vector<int64_t> tokenize(std::string_view text) const;

  /// Text of `ids` as CLIP decodes it: tokens joined, mapped back to bytes, invalid UTF-8
  /// replaced by U+FFFD, each "</w>" turned into a space. Unknown ids throw TokenizerError.
  std::string decode(const std::vector<int64_t>& ids) const;

  /// The BPE tokens (vocabulary strings, byte symbols as code points) of `text`.
  std::vector<std::string> bpe_tokens(std::string_view text) const;

  int64_t start_token() const;
  int64_t end_token() const;
  /// Number of ids (one more than the largest id).
  std::size_t vocab_size() const;
  const ClipTokenizerOptions& options() const;

 private:
  struct Impl;
  explicit ClipTokenizer(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

namespace detail {

/// GPT-2/CLIP's reversible byte -> code point table: printable Latin-1 bytes map to
/// themselves, the other 68 bytes to U+0100 onwards, so no BPE symbol is whitespace/control.
const std::vector<char32_t>& bytes_to_unicode();

/// UTF-8 helpers. Decoding replaces each maximal invalid subsequence with U+FFFD, as Python's
/// bytes.decode("utf-8", errors="replace").
std::u32string utf8_decode(std::string_view bytes);
void utf8_append(std::string& out, char32_t cp);
std::string utf8_encode(std::u32string_view text);

/// Unicode classes used by the pre-tokenizer regex (see the file comment for coverage).
bool is_letter(char32_t c);
bool is_number(char32_t c);
bool is_space(char32_t c);

/// Python's html.unescape for numeric entities and amp lt gt quot apos nbsp.
std::u32string html_unescape(std::u32string_view text);
/// CLIP's basic_clean: ftfy's character-level fixes, HTML unescaped twice, stripped.
std::u32string basic_clean(std::u32string_view text);
/// Runs of whitespace become one space; leading and trailing whitespace goes.
std::u32string whitespace_clean(std::u32string_view text);
/// str.lower() for the covered scripts.
std::u32string to_lower(std::u32string_view text);
/// The matches of CLIP's pre-tokenizer regex in cleaned, lower-cased text, as UTF-8.
std::vector<std::string> pre_tokenize(std::u32string_view text);

}  // namespace detail
}  // namespace clprompt
