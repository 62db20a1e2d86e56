@problemName Tiny
@univariate true
@classLabel true a b
