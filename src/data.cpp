// Compiled part of include/clprompt/data: dataset readers and image decoding.
