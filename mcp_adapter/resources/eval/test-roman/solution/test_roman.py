import unittest

from roman import from_roman, to_roman

KNOWN = {1: "I", 4: "IV", 9: "IX", 14: "XIV", 40: "XL", 90: "XC", 400: "CD", 944: "CMXLIV", 1994: "MCMXCIV",
         3999: "MMMCMXCIX"}


class RomanTest(unittest.TestCase):
    def test_to_roman(self):
        for number, numeral in KNOWN.items():
            self.assertEqual(to_roman(number), numeral)

    def test_from_roman(self):
        for number, numeral in KNOWN.items():
            self.assertEqual(from_roman(numeral), number)

    def test_round_trip(self):
        for number in range(1, 4000):
            self.assertEqual(from_roman(to_roman(number)), number)

    def test_out_of_range(self):
        for number in (0, -1, 4000):
            with self.assertRaises(ValueError):
                to_roman(number)


if __name__ == "__main__":
    unittest.main()
