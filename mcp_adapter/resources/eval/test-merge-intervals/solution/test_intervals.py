import unittest

from intervals import merge_intervals


class MergeIntervalsTest(unittest.TestCase):
    def test_empty(self):
        self.assertEqual(merge_intervals([]), [])

    def test_single(self):
        self.assertEqual(merge_intervals([(2, 4)]), [(2, 4)])

    def test_overlapping(self):
        self.assertEqual(merge_intervals([(1, 4), (3, 6)]), [(1, 6)])

    def test_touching(self):
        self.assertEqual(merge_intervals([(1, 3), (3, 5)]), [(1, 5)])

    def test_unsorted(self):
        self.assertEqual(merge_intervals([(8, 9), (1, 2)]), [(1, 2), (8, 9)])

    def test_nested(self):
        self.assertEqual(merge_intervals([(1, 10), (2, 3)]), [(1, 10)])

    def test_reversed_interval(self):
        with self.assertRaises(ValueError):
            merge_intervals([(5, 1)])


if __name__ == "__main__":
    unittest.main()
