"""What results to the EMR are made of: patient context, result documents, MRN matching."""
