#pragma once
// CIFAR-10 and CIFAR-100, "python version", in the layout torchvision downloads and every
// reference implementation reads (torchvision 0.13 datasets/cifar.py:30-49 and :148-169;
// CODA-Prompt dataloaders/dataloader.py:179-301; l2p-/dualprompt-pytorch datasets.py:106-112 through
// torchvision; SLCA utils/data.py:28-54 through torchvision):
//   <root>/cifar-100-python/{train, test, meta}
//   <root>/cifar-10-batches-py/{data_batch_1 ... data_batch_5, test_batch, batches.meta}
// Each data file is a pickled dict (read with data/python_pickle.hpp) holding 'data', a uint8
// numpy array [N, 3072] (the R, G and B planes of a 32x32 image), and the labels as a list of
// ints: 'fine_labels' and 'coarse_labels' (CIFAR-100) or 'labels' (CIFAR-10). The meta file
// holds 'fine_label_names' / 'coarse_label_names' or 'label_names'. Images load as uint8
// [N, 3, 32, 32], the same tensor the binary version gives (data/cifar.hpp).
//
//   TensorDataset train = load_cifar100_python("/data", Split::train);   // fine labels
#include <string>

#include "clprompt/data/cifar.hpp"
#include "clprompt/data/dataset.hpp"
#include "clprompt/data/python_pickle.hpp"

namespace clprompt {

/// Reads one CIFAR-100 python data file (`train` or `test`) with numbered class names. Throws
/// FileError naming the path and what was expected when the file is missing, is not such a
/// pickle, lacks a key, has an array that is not uint8 [N, 3072] (or [N, 3, 32, 32]), a label
/// list whose length differs from N, or a label outside [0, 100) (fine) / [0, 20) (coarse).
TensorDataset read_cifar100_python(const std::string& path, CifarLabel label = CifarLabel::fine,
                                   const PickleLimits& limits = {});

/// Loads <root>/cifar-100-python/{train|test} with the class names of
/// <root>/cifar-100-python/meta ('fine_label_names' or 'coarse_label_names'). `root` may also be
/// the cifar-100-python folder itself. torchvision requires the meta file, and so does this.
TensorDataset load_cifar100_python(const std::string& root, Split split, CifarLabel label = CifarLabel::fine,
                                   const PickleLimits& limits = {});

/// Reads one CIFAR-10 python batch file ('data', 'labels') with numbered class names.
TensorDataset read_cifar10_python(const std::string& path, const PickleLimits& limits = {});

/// Loads <root>/cifar-10-batches-py/data_batch_1 ... data_batch_5 (train, concatenated in that
/// order, as torchvision does) or test_batch, with the names of batches.meta ('label_names').
/// `root` may also be the cifar-10-batches-py folder itself.
TensorDataset load_cifar10_python(const std::string& root, Split split, const PickleLimits& limits = {});

}  // namespace clprompt
