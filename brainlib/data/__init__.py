"""The data: finding a dataset's files (discovery), decoding images, NIfTI volumes and DICOM
series into 2D slices (decoding, slices, dicom), the decoded cache (cache), the census of a
folder (census), the dataset a run trains on (dataset), the embedded MNI152-based dataset
(phantom) and figures about a dataset (figures)."""
