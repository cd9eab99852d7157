// The price of a basket after the best discount it qualifies for (only one applies).
const MEMBER_SHARE = 0.05;

function bestDiscount(total, isMember, couponCode) {
  let best = 0;
  if (isMember) {
    best = Math.max(best, total * MEMBER_SHARE);
  }
  if (couponCode === "SAVE10" && total >= 50) {
    best = Math.max(best, 10);
  }
  if (couponCode === "HALF" && total < 20) {
    best = Math.max(best, total / 2);
  }
  return Math.round((total - best) * 100) / 100;
}

function formatPrice(amount) {
  if (amount < 0) {
    throw new RangeError("negative price");
  }
  return "$" + amount.toFixed(2);
}

module.exports = { bestDiscount, formatPrice };
